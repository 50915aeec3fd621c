//! Heaps: each thread's set of pages, by size class, and the malloc and free paths through them.
//!
//! `malloc` looks up the thread's heap, the page that currently serves the size class, and pops
//! a block from that page's free list. `free` masks the pointer to its segment; if this thread
//! owns the segment it pushes the block on the page's local list, otherwise on the page's
//! atomic thread list. Everything else (collecting frees, finding or making pages, returning
//! memory) happens on the slow paths, out of line.
//!
//! Invariants:
//! - **H1 ownership**: a heap's `state` is touched only by the thread whose thread-local
//!   pointer holds it (see `thread.rs`), or by that thread's exit handler; other threads touch
//!   only `delayed_free`.
//! - **H2 current**: `current[c]` is the first page of `queues[c]`, or the shared empty page
//!   (whose free list is always empty) when the queue is empty; `direct[(n + 7) / 8]` is
//!   `current[class_of(n)]` for every `n <= SMALL_LOOKUP_MAX`. Pages in `queues[c]` serve class
//!   `c` and are not flagged full; pages on `full` have `FLAG_IN_FULL` and a `Use` delayed-free
//!   tag requested while their thread list was empty (P4).
//! - **H3 segments**: `segments` links every segment whose owner is this heap; those of small
//!   and medium kind with a free page are also on `with_free[kind]`. Spare segments (at most
//!   `MAX_SPARES`) are owned, empty, on neither list, and linked through `next` from `spare`.
//! - **H4 purge**: `purge` links the free pages of owned segments (and the spare) whose memory
//!   has not been returned to the OS yet, oldest first.
//! - **H5 no self-allocation**: nothing here calls malloc; heaps live in memory from `thread.rs`'s
//!   pool and segments come from `os.rs`.

use crate::huge;
use crate::huge_cache;
use crate::options;
use crate::os;
use crate::page::{Block, DelayedFree, Page, FLAG_HAS_ALIGNED, FLAG_IN_FULL};
use crate::segment::{self, segment_of, Segment, SegmentKind, HEADER_RESERVE, SEGMENT_SIZE};
use crate::size_class::{class_of, class_size, CLASS_COUNT, SMALL_LOOKUP_MAX};
use crate::thread;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The page every empty queue points at: its free list is always empty, so the fast path falls
/// through to the slow path without a separate check.
struct SharedEmptyPage(UnsafeCell<Page>);
// SAFETY: the empty page is never written: the only code that could write it, `Page::pop`,
// writes only after finding a block on its (always empty) free list.
unsafe impl Sync for SharedEmptyPage {}
static EMPTY_PAGE: SharedEmptyPage = SharedEmptyPage(UnsafeCell::new(Page::empty()));

/// The heap of a thread that has not allocated yet: every class points at the empty page.
pub static EMPTY_HEAP: Heap = Heap {
    state: UnsafeCell::new(HeapState::empty(EMPTY_PAGE.0.get())),
    delayed_free: AtomicPtr::new(ptr::null_mut()),
};

#[derive(Clone, Copy)]
struct PageQueue {
    first: *mut Page,
    last: *mut Page,
}

impl PageQueue {
    const EMPTY: PageQueue = PageQueue {
        first: ptr::null_mut(),
        last: ptr::null_mut(),
    };

    /// # Safety (for all three)
    /// The page must be valid, owned by this heap (H1), and on this queue (`remove`) or on no
    /// queue (`push_*`).
    unsafe fn push_front(&mut self, page: *mut Page) {
        // SAFETY: see above; the queue's pages are valid too.
        unsafe {
            (*page).prev = ptr::null_mut();
            (*page).next = self.first;
            if self.first.is_null() {
                self.last = page;
            } else {
                (*self.first).prev = page;
            }
        }
        self.first = page;
    }

    unsafe fn push_back(&mut self, page: *mut Page) {
        // SAFETY: see `push_front`.
        unsafe {
            (*page).next = ptr::null_mut();
            (*page).prev = self.last;
            if self.last.is_null() {
                self.first = page;
            } else {
                (*self.last).next = page;
            }
        }
        self.last = page;
    }

    unsafe fn remove(&mut self, page: *mut Page) {
        // SAFETY: see `push_front`.
        unsafe {
            let (prev, next) = ((*page).prev, (*page).next);
            if prev.is_null() {
                self.first = next;
            } else {
                (*prev).next = next;
            }
            if next.is_null() {
                self.last = prev;
            } else {
                (*next).prev = prev;
            }
            (*page).next = ptr::null_mut();
            (*page).prev = ptr::null_mut();
        }
    }
}

#[repr(C)]
pub struct Heap {
    /// Owner only (H1). First, so the fast path's `current` table sits at the heap's address.
    state: UnsafeCell<HeapState>,
    /// Atomic: any thread. Blocks freed remotely into pages that were full (P4).
    delayed_free: AtomicPtr<Block>,
}

// SAFETY: `state` is reached only by the owning thread (H1); `delayed_free` is atomic.
unsafe impl Sync for Heap {}

/// Entries of the direct table: one per 8 bytes of request up to `SMALL_LOOKUP_MAX`.
const DIRECT_SLOTS: usize = SMALL_LOOKUP_MAX / 8 + 1;

#[repr(C)]
pub struct HeapState {
    /// The page serving each small request size, by `(size + 7) / 8` (H2): one load instead
    /// of a class lookup and a load.
    direct: [*mut Page; DIRECT_SLOTS],
    current: [*mut Page; CLASS_COUNT],
    queues: [PageQueue; CLASS_COUNT],
    full: PageQueue,
    purge: PageQueue,
    segments: *mut Segment,
    with_free: [*mut Segment; 2],
    /// Empty segments kept for reuse, linked through `Segment::next`; at most `MAX_SPARES`.
    spare: *mut Segment,
    spare_count: u32,
    /// Classes whose only page emptied and was kept for reuse; freed on the next retire check.
    retained: u64,
    next_retire_check: u64,
    /// Slow paths that `malloc_slow` may still serve without a full `tick`.
    slow_paths_until_tick: u32,
    /// When this heap next adopts an abandoned segment on its own (see `tick`).
    next_adoption: u64,
    /// The heap this state belongs to.
    this: *mut Heap,
    /// Link in the pool of unused heaps (`thread.rs`).
    pub pool_next: *mut Heap,
}

const _: () = assert!(CLASS_COUNT <= 64, "`retained` has a bit per class");

/// Empty segments a heap keeps instead of unmapping them. Their free pages still go back to
/// the OS on the purge schedule: spares keep address space, not memory, and spare a program
/// that frees and reallocates megabytes at a time the mmap and munmap of every round.
const MAX_SPARES: u32 = 4;

impl HeapState {
    const fn empty(empty_page: *mut Page) -> HeapState {
        HeapState {
            direct: [empty_page; DIRECT_SLOTS],
            current: [empty_page; CLASS_COUNT],
            queues: [PageQueue::EMPTY; CLASS_COUNT],
            full: PageQueue::EMPTY,
            purge: PageQueue::EMPTY,
            segments: ptr::null_mut(),
            with_free: [ptr::null_mut(); 2],
            spare: ptr::null_mut(),
            spare_count: 0,
            retained: 0,
            next_retire_check: 0,
            slow_paths_until_tick: 0,
            next_adoption: 0,
            this: ptr::null_mut(),
            pool_next: ptr::null_mut(),
        }
    }
}

#[inline(always)]
fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP as *const Heap as *mut Heap
}

impl Heap {
    /// Writes a fresh, empty heap at `heap` (memory from the pool).
    ///
    /// # Safety
    /// `heap` must be valid for writes and not in use.
    pub unsafe fn initialize(heap: *mut Heap) {
        let mut state = HeapState::empty(empty_page());
        state.this = heap;
        // SAFETY: the caller gives us the memory.
        unsafe {
            ptr::write(
                heap,
                Heap {
                    state: UnsafeCell::new(state),
                    delayed_free: AtomicPtr::new(ptr::null_mut()),
                },
            )
        };
    }

    /// The owner-only state.
    ///
    /// # Safety
    /// Only the owning thread may call this (H1), and it must not hold another reference from
    /// an earlier call.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn state(&self) -> &mut HeapState {
        // SAFETY: H1 as the caller promises.
        unsafe { &mut *self.state.get() }
    }

    /// The pool link of an unused heap (`thread.rs`, T2).
    ///
    /// # Safety
    /// `heap` must point to heap-sized memory that no thread uses as a heap.
    pub unsafe fn pool_next(heap: *mut Heap) -> *mut *mut Heap {
        // SAFETY: the caller guarantees the memory; only an address is computed.
        unsafe { &raw mut (*(*heap).state.get()).pool_next }
    }

    /// Hands a block to the owner of `heap` (remote free into a full page, P4).
    ///
    /// # Safety
    /// `heap` must be a live heap, kept so by the caller's `Freeing` tag.
    pub unsafe fn push_delayed_free(heap: *mut Heap, block: *mut Block) {
        // SAFETY: the heap is live (caller); only the atomic field is touched.
        let list = unsafe { &(*heap).delayed_free };
        let mut head = list.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is ours until the exchange publishes it.
            unsafe { (*block).next = head };
            match list.compare_exchange_weak(head, block, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }
}

/// Allocates a block for a request of `size <= SMALL_LOOKUP_MAX` bytes from the calling
/// thread's heap; null on failure. `zero_bytes` asks for that many leading bytes to be zero.
#[inline(always)]
pub fn malloc_small(size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    debug_assert!(size <= SMALL_LOOKUP_MAX);
    let heap = thread::current_heap();
    // `heap` is this thread's heap or the empty heap, both valid, and the index is at most
    // SMALL_LOOKUP_MAX / 8 < DIRECT_SLOTS.
    // SAFETY: H1 (a valid heap) and H2 (the entry is a valid page).
    unsafe {
        let page = *(*(*heap).state.get()).direct.get_unchecked((size + 7) >> 3);
        pop_or_slow(heap, page, size, zero_bytes)
    }
}

/// Allocates a block of size class `class` (for callers that chose the class themselves).
#[inline(always)]
pub fn malloc_class(class: usize, zero_bytes: Option<usize>) -> *mut u8 {
    let heap = thread::current_heap();
    // SAFETY: as in `malloc_small`; `class` is below CLASS_COUNT.
    unsafe {
        let page = *(*(*heap).state.get()).current.get_unchecked(class);
        pop_or_slow(heap, page, class_size(class), zero_bytes)
    }
}

/// Pops a block from `page`, the current page for `size`, or takes the slow path.
///
/// # Safety
/// `heap` must be the calling thread's heap (or the empty heap) and `page` its current page
/// for requests of `size` bytes (H2).
#[inline(always)]
unsafe fn pop_or_slow(
    heap: *mut Heap,
    page: *mut Page,
    size: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    // Page::pop only writes a page that has a block, which the empty page never has.
    // SAFETY: the caller's contract (a valid heap and its current page, H2).
    unsafe {
        let free_is_zero = (*page).free_is_zero;
        let block = (*page).pop();
        if !block.is_null() {
            if let Some(bytes) = zero_bytes {
                zero_block(block, bytes, free_is_zero);
            }
            return block.cast();
        }
        malloc_slow(heap, size, zero_bytes)
    }
}

/// Zeroes a fresh block: only its link word if the rest is known to be zero.
///
/// # Safety
/// `block` must be an allocated block of at least `max(bytes, 8)` bytes.
#[inline(always)]
unsafe fn zero_block(block: *mut Block, bytes: usize, free_is_zero: bool) {
    // SAFETY: the caller gives us the block.
    unsafe {
        if free_is_zero {
            (*block).next = ptr::null_mut();
        } else {
            ptr::write_bytes(block.cast::<u8>(), 0, bytes);
        }
    }
}

/// The slow path's common case, kept small so it needs few registers: the current page's
/// `free` ran dry but its owner's frees wait on `local_free`. Everything else, including the
/// housekeeping tick, goes to `malloc_generic`.
/// Takes the request's size rather than its class, so the fast path keeps no class in a
/// register for it.
#[cold]
#[inline(never)]
unsafe fn malloc_slow(heap: *mut Heap, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    let class = class_of(size);
    // `heap` is this thread's own started heap (checked first), and `current[class]` a valid
    // page of ours or the empty page, whose `local_free` is always null.
    // SAFETY: H1 lets us change our own heap; H2 makes the page valid.
    unsafe {
        let state = (*heap).state.get();
        let page = *(*state).current.get_unchecked(class);
        if heap != empty_heap()
            && (*state).slow_paths_until_tick > 0
            && !(*page).local_free.is_null()
            && (*(*state).this)
                .delayed_free
                .load(Ordering::Relaxed)
                .is_null()
        {
            (*state).slow_paths_until_tick -= 1;
            (*page).collect();
            let block = (*page).pop();
            if let Some(bytes) = zero_bytes {
                zero_block(block, bytes, false);
            }
            return block.cast();
        }
    }
    // SAFETY: as above.
    unsafe { malloc_generic(heap, class, zero_bytes) }
}

#[cold]
#[inline(never)]
unsafe fn malloc_generic(heap: *mut Heap, class: usize, zero_bytes: Option<usize>) -> *mut u8 {
    let heap = if heap == empty_heap() {
        match thread::start_heap() {
            Some(heap) => heap,
            None => return crate::failed(),
        }
    } else {
        heap
    };
    // SAFETY: `heap` is this thread's live heap (H1).
    unsafe {
        let state = (*heap).state();
        state.tick();
        let page = state.find_page(class);
        if page.is_null() {
            return crate::failed();
        }
        let free_is_zero = (*page).free_is_zero;
        let block = (*page).pop();
        debug_assert!(!block.is_null());
        if let Some(bytes) = zero_bytes {
            zero_block(block, bytes, free_is_zero);
        }
        block.cast()
    }
}

/// Frees a block of a small, medium or large page, or a huge block.
///
/// # Safety
/// `address` must be a live pointer handed out by this allocator.
#[inline(always)]
pub unsafe fn free(address: *mut u8) {
    let heap = thread::current_heap();
    // The caller guarantees `address` is ours and live, so its segment header and page are
    // mapped. An owner word equal to our heap means the page is ours and has no flag set.
    // SAFETY: S2 (the header is readable) and P1 (only the owner changes the page).
    unsafe {
        let segment = segment_of(address);
        let page = (*segment).page_of(address);
        if (*page).owner.load(Ordering::Relaxed) == heap as usize {
            if (*page).push_local(address.cast()) {
                // The page is found again from the address out of line, so the fast path
                // keeps it in addressing modes instead of a register.
                page_emptied_at(heap, address);
            }
        } else {
            free_slow(heap, address);
        }
    }
}

#[cold]
#[inline(never)]
unsafe fn page_emptied_at(heap: *mut Heap, address: *mut u8) {
    // SAFETY: `free` just emptied the page holding `address`, which our heap owns (H1).
    unsafe {
        (*heap)
            .state()
            .page_emptied((*segment_of(address)).page_of(address))
    }
}

#[cold]
#[inline(never)]
unsafe fn free_slow(heap: *mut Heap, address: *mut u8) {
    // Unmapping or purging must not change what `errno` says to a C caller of free.
    let _errno = os::ErrnoGuard::save();
    // SAFETY: as in `free`.
    unsafe {
        let segment = segment_of(address);
        let page = (*segment).page_of(address);
        if (*segment).kind == SegmentKind::Huge {
            huge::free(segment);
            return;
        }
        let block = if (*page).flags() & FLAG_HAS_ALIGNED != 0 {
            (*page).block_start(address)
        } else {
            address
        };
        if (*page).owner_heap() == heap {
            (*heap).state().free_local(page, block.cast());
        } else {
            (*page).free_remote(block.cast());
        }
    }
}

/// Marks `page` (of the calling thread's heap) as handing out offset pointers for alignment.
///
/// # Safety
/// `address` must be a block just allocated by this thread.
pub unsafe fn mark_aligned(address: *mut u8) {
    // SAFETY: the block was allocated from this thread's heap, so the page is ours (P1).
    unsafe {
        let segment = segment_of(address);
        (*(*segment).page_of(address)).set_flag(FLAG_HAS_ALIGNED, true);
    }
}

impl HeapState {
    fn queue_push_front(&mut self, class: usize, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe { self.queues[class].push_front(page) };
        self.refresh_current(class);
    }

    fn queue_push_back(&mut self, class: usize, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe { self.queues[class].push_back(page) };
        self.refresh_current(class);
    }

    fn queue_remove(&mut self, class: usize, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on this queue.
        unsafe { self.queues[class].remove(page) };
        self.refresh_current(class);
    }

    /// Points `current[class]` and its direct-table slots at the queue's first page (H2).
    fn refresh_current(&mut self, class: usize) {
        let first = self.queues[class].first;
        let page = if first.is_null() { empty_page() } else { first };
        self.current[class] = page;
        let smallest = if class == 0 {
            0
        } else {
            class_size(class - 1) + 1
        };
        let largest = class_size(class).min(SMALL_LOOKUP_MAX);
        let mut size = smallest;
        while size <= largest {
            self.direct[(size + 7) >> 3] = page;
            size += 8;
        }
    }

    /// Frees a block of one of our pages that has flags set, or that arrived by the delayed
    /// list. (The flagless local free is inlined in `free`.)
    fn free_local(&mut self, page: *mut Page, block: *mut Block) {
        // SAFETY: H1: the page belongs to this heap.
        unsafe {
            if (*page).flags() & FLAG_IN_FULL != 0 {
                self.unfull(page);
            }
            if (*page).push_local(block) {
                self.page_emptied(page);
            }
        }
    }

    /// The last live block of `page` was freed by its owner.
    pub fn page_emptied(&mut self, page: *mut Page) {
        // SAFETY: H1: the page is ours.
        unsafe {
            let class = (*page).class as usize;
            // Keep the only page of a class for a while: a loop that allocates and frees one
            // block must not return and refetch a page every time.
            if self.current[class] == page && (*page).next.is_null() {
                self.retained |= 1 << class;
                return;
            }
            // Purging or unmapping must not change what `errno` says to a C caller of free.
            let _errno = os::ErrnoGuard::save();
            self.free_page(page);
        }
    }

    /// Moves a page off the full list back to its class queue.
    fn unfull(&mut self, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on the full list.
        unsafe {
            self.full.remove(page);
            (*page).set_flag(FLAG_IN_FULL, false);
            (*page).set_delayed_free(DelayedFree::None);
            self.queue_push_back((*page).class as usize, page);
        }
    }

    /// Slow-path housekeeping: blocks handed over by other threads, pending purges, retired
    /// pages. Purges and retirement need the clock, so they run on one slow path in
    /// `TICK_EVERY` (`malloc_slow` takes the others without calling here): a busy thread takes
    /// a slow path every few hundred allocations, so they run a few microseconds late at most.
    fn tick(&mut self) {
        const TICK_EVERY: u32 = 8;
        self.process_delayed_free();
        self.slow_paths_until_tick = TICK_EVERY - 1;
        let abandoned = segment::abandoned_count() != 0;
        let cached = !huge_cache::is_empty();
        if self.purge.first.is_null() && self.retained == 0 && !abandoned && !cached {
            return;
        }
        let now = os::monotonic_millis();
        self.purge_due(now);
        huge_cache::release_expired(now);
        if self.retained != 0 && now >= self.next_retire_check {
            self.free_retained();
            self.next_retire_check = now + options::purge_delay_millis();
        }
        // Exited threads leave their pending purges with their segments; adopting one segment
        // per purge delay makes sure that memory goes back to the OS even when no new thread
        // comes to need it.
        if abandoned && now >= self.next_adoption {
            if let Some(segment) = segment::pop_abandoned() {
                self.adopt(segment.as_ptr());
            }
            self.next_adoption = now + options::purge_delay_millis();
        }
    }

    #[inline(always)]
    fn process_delayed_free(&mut self) {
        // SAFETY: `this` is our own live heap; only its atomic field is touched.
        let list = unsafe { &(*self.this).delayed_free };
        if !list.load(Ordering::Relaxed).is_null() {
            self.take_delayed_free();
        }
    }

    #[inline(never)]
    fn take_delayed_free(&mut self) {
        // SAFETY: `this` is our own live heap; only its atomic field is touched.
        let list = unsafe { &(*self.this).delayed_free };
        let mut block = list.swap(ptr::null_mut(), Ordering::Acquire);
        while !block.is_null() {
            // SAFETY: blocks on the list are allocated blocks of our pages (P2, P4).
            unsafe {
                let next = (*block).next;
                let page = (*segment_of(block.cast())).page_of(block.cast());
                self.free_local(page, block);
                block = next;
            }
        }
    }

    fn free_retained(&mut self) {
        let mut classes = self.retained;
        self.retained = 0;
        while classes != 0 {
            let class = classes.trailing_zeros() as usize;
            classes &= classes - 1;
            let page = self.queues[class].first;
            // SAFETY: H2: queue pages are ours.
            unsafe {
                if !page.is_null() && (*page).live_blocks() == 0 {
                    self.free_page(page);
                }
            }
        }
    }

    /// Finds a page of `class` with a free block, making it current; null when out of memory.
    fn find_page(&mut self, class: usize) -> *mut Page {
        let mut page = self.queues[class].first;
        // SAFETY: H1/H2: every page on our queues is ours.
        unsafe {
            while !page.is_null() {
                (*page).collect();
                (*page).extend();
                if (*page).has_free() {
                    if self.queues[class].first != page {
                        self.queue_remove(class, page);
                        self.queue_push_front(class, page);
                    }
                    return page;
                }
                // Exhausted: park it on the full list, unless remote frees just arrived.
                if !(*page).try_request_delayed_free() {
                    continue;
                }
                let next = (*page).next;
                self.queue_remove(class, page);
                (*page).set_flag(FLAG_IN_FULL, true);
                self.full.push_back(page);
                page = next;
            }
        }
        self.fresh_page(class)
    }

    /// Starts a new page for `class` at the front of its queue.
    fn fresh_page(&mut self, class: usize) -> *mut Page {
        let block_size = class_size(class);
        let page = self.take_page(SegmentKind::for_block_size(block_size));
        if page.is_null() {
            return page;
        }
        // SAFETY: the page was just taken from one of our segments.
        unsafe {
            (*page).start_serving(class as u8, block_size, self.this);
            (*page).extend();
        }
        self.queue_push_front(class, page);
        page
    }

    /// Takes a free page of `kind` from an owned segment, the spare, an adopted segment, or a
    /// new one, in that order.
    fn take_page(&mut self, kind: SegmentKind) -> *mut Page {
        let list = kind as usize;
        let mut adoptions_left = 4;
        loop {
            if kind != SegmentKind::Large && !self.with_free[list].is_null() {
                let segment = self.with_free[list];
                // SAFETY: H3: segments on our lists are ours.
                unsafe {
                    let page = (*segment).take_page();
                    if !(*segment).has_free_page() {
                        self.unlink_with_free(segment);
                    }
                    self.cancel_purge(page);
                    return page;
                }
            }
            let segment = if !self.spare.is_null() {
                let spare = self.pop_spare();
                // SAFETY: H3: spares are ours and empty.
                if unsafe { (*spare).kind } != kind {
                    self.decommit_segment(spare, kind);
                }
                spare
            } else if adoptions_left > 0 {
                adoptions_left -= 1;
                match segment::pop_abandoned() {
                    Some(segment) => {
                        self.adopt(segment.as_ptr());
                        continue;
                    }
                    None => {
                        adoptions_left = 0;
                        continue;
                    }
                }
            } else {
                match Segment::create(kind) {
                    Some(segment) => segment.as_ptr(),
                    None => return ptr::null_mut(),
                }
            };
            self.link_segment(segment);
            if kind == SegmentKind::Large {
                // SAFETY: the segment is ours, empty and laid out as large.
                unsafe {
                    let page = (*segment).take_page();
                    self.cancel_purge(page);
                    return page;
                }
            }
        }
    }

    /// Adds an owned segment to `segments`, and to `with_free` if it has a free page (H3).
    fn link_segment(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on no list.
        unsafe {
            (*segment).prev = ptr::null_mut();
            (*segment).next = self.segments;
            if !self.segments.is_null() {
                (*self.segments).prev = segment;
            }
            self.segments = segment;
            (*segment).in_with_free_list = false;
            if (*segment).has_free_page() {
                self.link_with_free(segment);
            }
        }
    }

    fn unlink_segment(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on `segments`.
        unsafe {
            if (*segment).in_with_free_list {
                self.unlink_with_free(segment);
            }
            let (prev, next) = ((*segment).prev, (*segment).next);
            if prev.is_null() {
                self.segments = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*segment).next = ptr::null_mut();
            (*segment).prev = ptr::null_mut();
        }
    }

    fn link_with_free(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and not on the list.
        unsafe {
            let kind = (*segment).kind;
            if kind == SegmentKind::Large || (*segment).in_with_free_list {
                return;
            }
            let head = &mut self.with_free[kind as usize];
            (*segment).prev_with_free = ptr::null_mut();
            (*segment).next_with_free = *head;
            if !head.is_null() {
                (**head).prev_with_free = segment;
            }
            *head = segment;
            (*segment).in_with_free_list = true;
        }
    }

    fn unlink_with_free(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours and on the list.
        unsafe {
            let (prev, next) = ((*segment).prev_with_free, (*segment).next_with_free);
            if prev.is_null() {
                self.with_free[(*segment).kind as usize] = next;
            } else {
                (*prev).next_with_free = next;
            }
            if !next.is_null() {
                (*next).prev_with_free = prev;
            }
            (*segment).next_with_free = ptr::null_mut();
            (*segment).prev_with_free = ptr::null_mut();
            (*segment).in_with_free_list = false;
        }
    }

    /// Returns an empty page (on a class queue or the full list) to its segment.
    fn free_page(&mut self, page: *mut Page) {
        // SAFETY: H1/H2/H3: the page and its segment are ours.
        unsafe {
            debug_assert!((*page).live_blocks() == 0);
            if (*page).flags() & FLAG_IN_FULL != 0 {
                self.full.remove(page);
            } else {
                self.queue_remove((*page).class as usize, page);
            }
            let segment = segment_of((*page).area);
            (*segment).return_page(&mut *page);
            self.schedule_purge(page);
            if (*segment).used_pages == 0 {
                self.segment_emptied(segment);
            } else {
                self.link_with_free(segment);
            }
        }
    }

    /// Queues a free page's memory to go back to the OS after the purge delay (H4).
    fn schedule_purge(&mut self, page: *mut Page) {
        // SAFETY: H1: a free page of ours.
        unsafe {
            if (*page).memory_is_zero {
                return;
            }
            let delay = options::purge_delay_millis();
            if delay == 0 {
                (*page).memory_is_zero = os::decommit((*page).area, (*page).area_size);
                return;
            }
            (*page).purge_at = os::monotonic_millis() + delay;
            (*page).purge_pending = true;
            self.purge.push_back(page);
        }
    }

    fn cancel_purge(&mut self, page: *mut Page) {
        // SAFETY: H4: a pending page is on our purge list.
        unsafe {
            if (*page).purge_pending {
                self.purge.remove(page);
                (*page).purge_pending = false;
            }
        }
    }

    fn cancel_purges_of(&mut self, segment: *mut Segment) {
        // SAFETY: H3: the segment is ours.
        unsafe {
            for index in 0..(*segment).page_count as usize {
                self.cancel_purge(&mut (*segment).pages[index]);
            }
        }
    }

    /// Returns the memory of free pages whose delay has passed (all of them if `now` is
    /// `u64::MAX`).
    fn purge_due(&mut self, now: u64) {
        let mut page = self.purge.first;
        // SAFETY: H4: pages on the purge list are free pages of our segments.
        unsafe {
            while !page.is_null() && (*page).purge_at <= now {
                let next = (*page).next;
                self.purge.remove(page);
                (*page).purge_pending = false;
                (*page).memory_is_zero = os::decommit((*page).area, (*page).area_size);
                page = next;
            }
        }
    }

    /// A segment's last page was freed: keep it as a spare or release it. The first spare
    /// keeps its pages on the purge schedule (a program that frees and reallocates at once
    /// reuses them warm); further spares give their memory back at once, in one `madvise`
    /// instead of the `munmap` now and `mmap` later that releasing would cost.
    fn segment_emptied(&mut self, segment: *mut Segment) {
        self.unlink_segment(segment);
        if self.spare_count < MAX_SPARES {
            if self.spare_count > 0 {
                // SAFETY: H3: the segment is ours.
                let kind = unsafe { (*segment).kind };
                self.decommit_segment(segment, kind);
            }
            // SAFETY: H3: the segment is ours, empty and on no list.
            unsafe { (*segment).next = self.spare };
            self.spare = segment;
            self.spare_count += 1;
            return;
        }
        self.cancel_purges_of(segment);
        // SAFETY: the segment is empty (S4) and on none of our lists now.
        unsafe { Segment::release(segment) };
    }

    /// Gives an empty segment's memory back in one `madvise` and lays it out as `kind`.
    fn decommit_segment(&mut self, segment: *mut Segment, kind: SegmentKind) {
        self.cancel_purges_of(segment);
        // An empty segment may be laid out again (S2).
        // SAFETY: H3: the segment is ours, empty and on no list.
        unsafe {
            let area = (segment as *mut u8).add(HEADER_RESERVE);
            let zeroed = os::decommit(area, SEGMENT_SIZE - HEADER_RESERVE);
            (*segment).lay_out(kind, zeroed);
        }
    }

    fn pop_spare(&mut self) -> *mut Segment {
        let spare = self.spare;
        if !spare.is_null() {
            // SAFETY: H3: spares are ours and linked through `next`.
            self.spare = unsafe { (*spare).next };
            self.spare_count -= 1;
        }
        spare
    }

    /// Takes over a segment whose thread exited (S1): requeues its pages, frees empty ones, and
    /// takes on the purges its free pages were waiting for.
    fn adopt(&mut self, segment: *mut Segment) {
        // SAFETY: popping it off the abandoned list made us the segment's only user (S1).
        unsafe {
            self.link_segment(segment);
            for index in 0..(*segment).page_count as usize {
                let page: *mut Page = &mut (*segment).pages[index];
                if !(*page).in_use {
                    if (*page).purge_pending {
                        self.purge.push_back(page);
                    }
                    continue;
                }
                (*page).set_flag(FLAG_IN_FULL, false);
                (*page).set_owner_heap(self.this);
                (*page).set_delayed_free(DelayedFree::None);
                (*page).collect();
                if (*page).live_blocks() == 0 {
                    (*segment).return_page(&mut *page);
                    self.schedule_purge(page);
                    self.link_with_free(segment);
                } else if (*page).is_exhausted() && (*page).try_request_delayed_free() {
                    (*page).set_flag(FLAG_IN_FULL, true);
                    self.full.push_back(page);
                } else {
                    self.queue_push_back((*page).class as usize, page);
                }
            }
            if (*segment).used_pages == 0 {
                self.segment_emptied(segment);
            }
        }
    }

    /// Gives back every free page's memory now, frees retained and empty pages, drops the
    /// spares, and adopts abandoned segments to do the same for them.
    pub fn collect(&mut self) {
        self.process_delayed_free();
        while let Some(segment) = segment::pop_abandoned() {
            self.adopt(segment.as_ptr());
        }
        self.collect_pages();
        self.purge_due(u64::MAX);
        self.release_spares();
        huge_cache::release_expired(u64::MAX);
    }

    /// Collects every page's frees and returns the pages that are empty.
    fn collect_pages(&mut self) {
        self.retained = 0;
        for class in 0..CLASS_COUNT {
            let mut page = self.queues[class].first;
            while !page.is_null() {
                // SAFETY: H2: queue pages are ours.
                unsafe {
                    let next = (*page).next;
                    (*page).collect();
                    if (*page).live_blocks() == 0 {
                        self.free_page(page);
                    }
                    page = next;
                }
            }
        }
        let mut page = self.full.first;
        while !page.is_null() {
            // SAFETY: H2: full pages are ours.
            unsafe {
                let next = (*page).next;
                (*page).collect();
                if (*page).has_free() || !(*page).local_free.is_null() {
                    self.unfull(page);
                    if (*page).live_blocks() == 0 {
                        self.free_page(page);
                    }
                }
                page = next;
            }
        }
    }

    fn release_spares(&mut self) {
        loop {
            let spare = self.pop_spare();
            if spare.is_null() {
                return;
            }
            self.cancel_purges_of(spare);
            // SAFETY: the spare is empty and on no list (H3).
            unsafe { Segment::release(spare) };
        }
    }

    /// The owning thread is exiting: free what is empty, abandon the rest for adoption. Purges
    /// no page: a program that starts and ends threads constantly must not pay a purge per page
    /// per thread. (Segments that empty here are decommitted or released as anywhere else.)
    pub fn abandon(&mut self) {
        // No remote free may reach this heap once it goes back to the pool (P4). Turning every
        // tag to `Never` waits out remote threads mid-hand-over and stops new hand-overs; the
        // collection below may reset tags to `None`, which is as safe, since only `find_page`
        // (never called from here on) turns a tag to `Use`.
        self.for_each_page(|page| page.set_delayed_free(DelayedFree::Never));
        self.process_delayed_free();
        self.collect_pages();
        // Pending purges stay with their pages (`purge_pending`, `purge_at`): the adopter
        // queues them again. Only the list links, which are this heap's, are dropped.
        let mut page = self.purge.first;
        while !page.is_null() {
            // SAFETY: H4: pages on the purge list are free pages of our segments.
            unsafe {
                let next = (*page).next;
                (*page).next = ptr::null_mut();
                (*page).prev = ptr::null_mut();
                page = next;
            }
        }
        self.purge = PageQueue::EMPTY;
        // Spares, empty, go to the abandoned list too: the next thread takes them instead of
        // mapping segments.
        loop {
            let spare = self.pop_spare();
            if spare.is_null() {
                break;
            }
            // SAFETY: the spare is ours, empty and on none of our lists (H3).
            unsafe { segment::push_abandoned(spare) };
        }
        while !self.segments.is_null() {
            let segment = self.segments;
            self.unlink_segment(segment);
            // Once its pages have no owner, other threads treat every free into the segment as
            // remote, and the adopter takes it from the list's lock. The aligned flag stays:
            // frees must still find block starts.
            // SAFETY: S1: the segment is ours until it is on the abandoned list.
            unsafe {
                for index in 0..(*segment).page_count as usize {
                    let page = &mut (*segment).pages[index];
                    if page.in_use {
                        page.next = ptr::null_mut();
                        page.prev = ptr::null_mut();
                        page.set_flag(FLAG_IN_FULL, false);
                        page.set_owner_heap(ptr::null_mut());
                    }
                }
                segment::push_abandoned(segment);
            }
        }
        for class in 0..CLASS_COUNT {
            self.queues[class] = PageQueue::EMPTY;
            self.current[class] = empty_page();
        }
        self.full = PageQueue::EMPTY;
        self.retained = 0;
    }

    fn for_each_page(&mut self, mut visit: impl FnMut(&mut Page)) {
        let mut segment = self.segments;
        while !segment.is_null() {
            // SAFETY: H3: our segments and their pages are ours.
            unsafe {
                for index in 0..(*segment).page_count as usize {
                    let page = &mut (*segment).pages[index];
                    if page.in_use {
                        visit(page);
                    }
                }
                segment = (*segment).next;
            }
        }
    }
}

/// Frees everything this thread's heap can give back now (see [`HeapState::collect`]). A
/// thread without a heap gets one, since adopting abandoned segments needs it.
pub fn collect_current() {
    let mut heap = thread::current_heap();
    if heap == empty_heap() {
        match thread::start_heap() {
            Some(started) => heap = started,
            None => return,
        }
    }
    // SAFETY: H1: our own heap.
    unsafe { (*heap).state().collect() };
}
