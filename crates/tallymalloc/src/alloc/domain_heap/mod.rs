//! Domain heaps: one thread's pages of one domain, by size class, and the malloc and free fast
//! paths through them.
//!
//! `malloc` looks up the thread's domain heap (for `raw`, the thread's heap itself), the page
//! that currently serves the size class, and pops a block from that page's free list. `free`
//! masks the pointer to its segment and page; if the page's owner word is the domain heap of the
//! calling thread and family, it pushes the block on the page's local list. Anything else (a
//! remote free, a flagged page, a huge block, a block of another family) takes `free_slow`,
//! which is where mismatched families are caught: the owner comparison that makes a free local
//! also proves its family right. Collecting frees and finding pages happen on slow paths, out
//! of line; segments and memory come from the thread's [`Heap`].
//!
//! This module holds the domain heap, its page queues and its page management; `malloc.rs`
//! and `free.rs` hold the two paths.
//!
//! Invariants:
//! - **H1 ownership**: a domain heap's `pages` are touched only by the thread whose heap it
//!   belongs to (see `thread.rs`), or by that thread's exit handler; other threads touch only
//!   `delayed_free` and read `counters`. No `&mut DomainPages` is held across a call into the
//!   thread's [`Heap`], which may requeue pages into any of its domain heaps (adoption).
//! - **H2 current**: `current[c]` is the first page of `queues[c]`, or the shared empty page
//!   (whose free list is always empty) when the queue is empty; `direct[(n + 7) / 8]` is
//!   `current[SizeClass::of(n)]` for every `n <= SMALL_LOOKUP_MAX`. Pages in `queues[c]` serve class
//!   `c` and are not flagged full; pages on `full` have `FLAG_IN_FULL` and a `Use` delayed-free
//!   tag requested while their thread list was empty (P4). Every page on them has this heap's
//!   domain and this heap as its owner.
//! - **H5 no self-allocation**: nothing here calls malloc.

mod free;
mod malloc;

pub use free::{domain_of, free, free_huge_block, free_if_of, free_in_own_domain, is_block};
pub use malloc::{
    allocate_aligned_plain, allocate_core, allocate_core_led, allocate_huge_unhooked, malloc_class,
    malloc_small,
};

use crate::alloc::heap::Heap;
use crate::alloc::huge;
use crate::alloc::page::{
    Block, DelayedFree, Page, FLAG_HAS_ALIGNED, FLAG_IN_FULL, FLAG_SAMPLED, FLAG_SLOW_ONLY,
    HUGE_CLASS,
};
use crate::alloc::segment::{segment_of, Segment, SegmentKind};
use crate::alloc::size_class::{SizeClass, CLASS_COUNT, SMALL_LOOKUP_MAX};
use crate::alloc::thread;
use crate::debug;
use crate::platform::list::List;
use crate::platform::os;
use crate::policy::domain::Domain;
use crate::policy::secure;
use crate::stats::{self, Counters};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The page every empty queue points at: its free list is always empty, so the fast path falls
/// through to the slow path without a separate check.
struct SharedEmptyPage(UnsafeCell<Page>);
// The only code that could write the empty page, `Page::pop`, writes only after finding a
// block on its (always empty) free list.
// SAFETY: the empty page is never written, so sharing it is sharing a constant.
unsafe impl Sync for SharedEmptyPage {}
static EMPTY_PAGE: SharedEmptyPage = SharedEmptyPage(UnsafeCell::new(Page::empty()));

#[inline(always)]
pub(crate) fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

/// A queue of pages (owner only, H1): a class's pages, the full pages, the pages waiting to
/// be purged.
pub(crate) type PageQueue = List<Page>;

/// Entries of the direct table: one per 8 bytes of request up to `SMALL_LOOKUP_MAX`.
const DIRECT_SLOTS: usize = SMALL_LOOKUP_MAX / 8 + 1;

/// One thread's pages of one domain.
#[repr(C)]
pub struct DomainHeap {
    /// Owner only (H1). First, so the fast path's `direct` table sits at the heap's address.
    pages: UnsafeCell<DomainPages>,
    /// Atomic: any thread. Blocks freed remotely into pages that were full (P4).
    delayed_free: AtomicPtr<Block>,
    pub counters: Counters,
}

// SAFETY: `pages` is reached only by the owning thread (H1); the rest is atomic.
unsafe impl Sync for DomainHeap {}

#[repr(C)]
pub struct DomainPages {
    /// The page serving each small request size, by `(size + 7) / 8` (H2): one load instead
    /// of a class lookup and a load.
    direct: [*mut Page; DIRECT_SLOTS],
    current: [*mut Page; CLASS_COUNT],
    /// The page marked `SERVING` for each class (P3): the first of its queue, which is also
    /// the current page but in debug mode and secure mode of a normal build; null for none.
    serving: [*mut Page; CLASS_COUNT],
    queues: [PageQueue; CLASS_COUNT],
    full: PageQueue,
    /// Slow paths that `malloc_slow` may still serve without the thread's `tick`.
    slow_paths_until_tick: u32,
    /// When `malloc_in_class` last ran the tick (`os::coarse_millis`).
    ticked_at: u64,
    /// Owner frees until the next `heartbeat`.
    frees_until_heartbeat: u32,
    /// The profile's epoch the countdowns to the next samples were drawn in (`profile/`).
    sample_epoch: u32,
    /// This heap's draws for the profile's countdowns.
    sample_random: crate::profile::Random,
    domain: u8,
    /// This domain heap, and the thread heap it belongs to.
    this: *mut DomainHeap,
    heap: *mut Heap,
}

impl DomainPages {
    const fn empty(empty_page: *mut Page) -> DomainPages {
        DomainPages {
            direct: [empty_page; DIRECT_SLOTS],
            current: [empty_page; CLASS_COUNT],
            serving: [ptr::null_mut(); CLASS_COUNT],
            queues: [PageQueue::EMPTY; CLASS_COUNT],
            full: PageQueue::EMPTY,
            slow_paths_until_tick: 0,
            ticked_at: 0,
            frees_until_heartbeat: HEARTBEAT_FREES,
            sample_epoch: 0,
            sample_random: crate::profile::Random::new(0),
            domain: 0,
            this: ptr::null_mut(),
            heap: ptr::null_mut(),
        }
    }
}

impl DomainHeap {
    /// The domain heap of a thread that has not allocated in its domain yet.
    pub const fn empty() -> DomainHeap {
        DomainHeap {
            pages: UnsafeCell::new(DomainPages::empty(EMPTY_PAGE.0.get())),
            delayed_free: AtomicPtr::new(ptr::null_mut()),
            counters: Counters::new(),
        }
    }

    /// Writes a fresh domain heap for `domain` of `heap` at `this`, and puts its counters on
    /// the stats' active list.
    ///
    /// # Safety
    /// `this` must be valid for writes and not in use, and stay valid until [`Self::retire`].
    pub unsafe fn initialize(this: *mut DomainHeap, heap: *mut Heap, domain: Domain) {
        let mut pages = DomainPages::empty(empty_page());
        pages.this = this;
        pages.heap = heap;
        pages.domain = domain.stored();
        // Heaps draw apart: their addresses and the clock differ.
        pages.sample_random =
            crate::profile::Random::new((this as u64).rotate_left(32) ^ os::monotonic_millis());
        // SAFETY: the caller gives us the memory.
        unsafe {
            ptr::write(&raw mut (*this).pages, UnsafeCell::new(pages));
            ptr::write(
                &raw mut (*this).delayed_free,
                AtomicPtr::new(ptr::null_mut()),
            );
            stats::activate(&raw const (*this).counters, domain);
        }
    }

    /// The owner-only state.
    ///
    /// # Safety
    /// Only the owning thread may call this (H1), and it must not hold another reference from
    /// an earlier call, nor keep this one across a call into the thread's heap.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn pages(&self) -> &mut DomainPages {
        // SAFETY: H1 as the caller promises.
        unsafe { &mut *self.pages.get() }
    }

    pub fn domain(&self) -> Domain {
        // SAFETY: `domain` is written once, before the heap is published to its thread.
        unsafe { Domain::from_stored((*self.pages.get()).domain) }
    }

    /// Hands a block to the owner of `heap` (remote free into a full page, P4).
    ///
    /// # Safety
    /// `heap` must be a live domain heap, kept so by the caller's `Freeing` tag.
    pub unsafe fn push_delayed_free(heap: *mut DomainHeap, block: *mut Block) {
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

/// The calling thread's domain heap for `domain` (the empty one if it has none yet).
#[inline(always)]
fn domain_heap(domain: Domain) -> *mut DomainHeap {
    let heap = thread::current_heap();
    if domain == Domain::RAW {
        // The raw domain heap is the thread heap's first field.
        heap.cast()
    } else {
        // SAFETY: the thread heap (or the empty heap) is valid, and `domain < MAX_DOMAINS`.
        unsafe { Heap::domain_heap(heap, domain) }
    }
}

/// Owner frees between two heartbeats.
const HEARTBEAT_FREES: u32 = 4096;

/// Slow paths between two runs of the thread's housekeeping `tick`: a busy thread takes a slow
/// path every few hundred allocations, so purges and retirement run a few microseconds late at
/// most.
const TICK_EVERY: u32 = 8;

/// Secure mode's allocations all pass the slow paths, so they tick once per this many.
const SECURE_POPS_PER_TICK: u32 = 64;

/// The calling thread's domain heap for `domain`, to count an operation in. A thread that
/// frees before it allocates gets one now, so that its counts stay in its own counters rather
/// than in atomics every such thread shares; if that fails, the empty heap (whose callers
/// count in the shared "orphan" totals).
fn counting_heap(domain: Domain) -> *mut DomainHeap {
    let mine = domain_heap(domain);
    if mine != thread::empty_domain_heap() || !stats::ENABLED {
        return mine;
    }
    start_counting_heap(domain, mine)
}

#[cold]
#[inline(never)]
fn start_counting_heap(domain: Domain, empty: *mut DomainHeap) -> *mut DomainHeap {
    // A failed mapping must not change what `errno` says to a C caller of free.
    let _errno = os::ErrnoGuard::save();
    thread::start_domain_heap(domain).unwrap_or(empty)
}

/// Counts a huge block allocated for `domain` by the calling thread, and samples it for the
/// profile if the draw says so (`requested` bytes asked for).
pub fn count_huge_allocation(domain: Domain, block: *mut u8, requested: usize, usable: usize) {
    let mine = counting_heap(domain);
    if mine == thread::empty_domain_heap() {
        stats::count_orphan_huge_allocation(domain, usable);
        return;
    }
    // SAFETY: our own live domain heap; counters are written by their owner only (A1).
    unsafe {
        (*mine).counters.count_huge_allocation(usable);
        if crate::profile::active() && (*mine).sample_huge(requested) {
            // Recording may map metadata; a C caller's errno must not change.
            let _errno = os::ErrnoGuard::save();
            crate::profile::record(block as usize, requested, requested);
        }
    }
}

/// Counts a huge block of `domain` resized from `old_usable` to `new_usable` bytes: a free of
/// the old size and an allocation of the new one.
pub fn count_huge_resize(domain: Domain, old_usable: usize, new_usable: usize) {
    let mine = counting_heap(domain);
    if mine == thread::empty_domain_heap() {
        stats::count_orphan_huge_free(domain, old_usable);
        stats::count_orphan_huge_allocation(domain, new_usable);
    } else {
        // SAFETY: our own live domain heap (A1).
        unsafe {
            (*mine).counters.count_huge_free(old_usable);
            (*mine).counters.count_huge_allocation(new_usable);
        }
    }
}

/// Marks the page of `address` (of the calling thread's heap) as handing out offset pointers
/// for alignment.
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

impl DomainHeap {
    /// Pops a block of `page` (ours, or the empty page) for a request of `size` bytes and
    /// counts it; null when `free` is empty. (The fast path, `pop_or_slow`, does the same in
    /// its own order.)
    #[inline(always)]
    fn pop(&self, page: *mut Page, size: usize) -> *mut Block {
        // `Page::pop` writes only a page with a free block, which the empty page never has.
        // SAFETY: H1: the page is ours, or the empty page.
        let block = unsafe { (*page).pop() };
        // SAFETY: H1: the page is ours (or the empty page, whose `free` is null).
        if !block.is_null() && self.count_allocation(unsafe { (*page).size_class() }) {
            return self.sampled(page, block, size);
        }
        block
    }

    /// Counts a block of class `class` just popped from a page of ours; true if it is the class's next
    /// profile sample (stats.rs, A4).
    ///
    /// On x86-64 this is one `inc` of the count in memory, relative to the heap, and a branch
    /// on its zero flag: written in Rust, the compiler loads, adds, stores and then tests the
    /// register (the C pair took 66 instructions, 65 this way; docs/MEASUREMENTS.md).
    #[inline(always)]
    pub(crate) fn count_allocation(&self, class: SizeClass) -> bool {
        #[cfg(target_arch = "x86_64")]
        if stats::ENABLED {
            const OFFSET: usize =
                core::mem::offset_of!(DomainHeap, counters) + Counters::ALLOCATION_COUNTS_OFFSET;
            let mut due = false;
            // The count is an aligned AtomicU64 at `self + OFFSET + 8 * class`; one `inc` of an
            // aligned word is a single store to readers, as `Counters::count_allocation`'s
            // atomic store is. A4: zero means the sample is due.
            // SAFETY: A1: the owner thread bumps its own count; SC1: class < CLASS_COUNT.
            unsafe {
                core::arch::asm!(
                    "inc qword ptr [{heap} + {class} * 8 + {offset}]",
                    "jz {due}",
                    heap = in(reg) self,
                    class = in(reg) class.index(),
                    offset = const OFFSET,
                    due = label {
                        crate::platform::opaque::unlikely();
                        due = true;
                    },
                    options(nostack),
                );
            }
            return due;
        }
        // SAFETY: A1: our own counters.
        unsafe { self.counters.count_allocation(class) }
    }

    /// `block`, just popped from `page` for `size` bytes, is its class's next sample: draws the
    /// class's next countdown and, while profiling, records the sample and flags the page
    /// (PF1). With profiling off this runs once per 2^62 allocations of a class.
    #[cold]
    #[inline(never)]
    pub(crate) fn sampled(&self, page: *mut Page, block: *mut Block, size: usize) -> *mut Block {
        // Recording may map metadata; a C caller's errno must not change.
        let _errno = os::ErrnoGuard::save();
        // SAFETY: H1: the page and the heap's pages are ours.
        unsafe {
            let class = (*page).size_class();
            let gap = crate::profile::next_gap(&mut self.pages().sample_random, class.size());
            self.counters.rearm(class, gap);
            if crate::profile::active()
                && crate::profile::record(block as usize, size, (*page).block_size)
            {
                // PF4: the count before the hint, so a thread that sees the new hint sees the
                // count that includes it.
                (*page).sampled.fetch_add(1, Ordering::AcqRel);
                (*page).sample_hint.store(block as usize, Ordering::Release);
                (*page).set_flag(FLAG_SAMPLED, true);
            }
        }
        block
    }

    /// Draws every class's countdown to its next sample anew if profiling started or stopped
    /// since they were drawn (slow paths call this).
    #[inline]
    fn follow_profile(&self) {
        let epoch = crate::profile::epoch();
        // SAFETY: H1: the heap's pages are ours.
        if unsafe { self.pages().sample_epoch } != epoch {
            self.redraw_countdowns(epoch);
        }
    }

    #[cold]
    #[inline(never)]
    fn redraw_countdowns(&self, epoch: u32) {
        // SAFETY: H1: the heap's pages are ours.
        let pages = unsafe { self.pages() };
        pages.sample_epoch = epoch;
        for class in (0..CLASS_COUNT).filter_map(SizeClass::from_index) {
            let gap = crate::profile::next_gap(&mut pages.sample_random, class.size());
            // SAFETY: A1: our own counters.
            unsafe { self.counters.rearm(class, gap) };
        }
    }

    /// Whether to sample a huge block of `size` bytes this heap just allocated.
    fn sample_huge(&self, size: usize) -> bool {
        // SAFETY: H1: the heap's pages are ours.
        crate::profile::sample_huge(unsafe { &mut self.pages().sample_random }, size)
    }

    /// Takes `class`'s allocations and frees since the last time into the counters' drift
    /// (stats.rs).
    #[inline]
    fn settle_class(&self, class: SizeClass) {
        // SAFETY: A1: our own counters; `class` is below CLASS_COUNT.
        unsafe { self.counters.settle_class(class) };
    }

    /// Pops a block of `page`, a secure page of a normal build with a free block, for a
    /// request of `size` bytes, and counts it.
    fn pop_secure(&self, page: *mut Page, size: usize) -> *mut Block {
        // SAFETY: H1: the page is ours.
        let block = unsafe { (*page).pop_secure() };
        // SAFETY: H1: the page is ours.
        if self.count_allocation(unsafe { (*page).size_class() }) {
            return self.sampled(page, block, size);
        }
        block
    }

    fn queue_push_front(&self, class: SizeClass, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe {
            let pages = self.pages();
            pages.queues[class].push_front(page);
            pages.refresh_current(class);
        }
    }

    pub(crate) fn queue_push_back(&self, class: SizeClass, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe {
            let pages = self.pages();
            pages.queues[class].push_back(page);
            pages.refresh_current(class);
        }
    }

    fn queue_remove(&self, class: SizeClass, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on this queue.
        unsafe {
            let pages = self.pages();
            pages.queues[class].remove(page);
            pages.refresh_current(class);
        }
    }

    /// Parks an exhausted page of ours, already off its queue, on the full list.
    pub(crate) fn push_full(&self, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no list.
        unsafe {
            (*page).set_flag(FLAG_IN_FULL, true);
            self.pages().full.push_back(page);
        }
    }

    /// Frees a block of one of our pages that has flags set, or that arrived by the delayed
    /// list. (The flagless local free is inlined in `free`.)
    fn free_local(&self, page: *mut Page, block: *mut Block) {
        // SAFETY: H1: the page belongs to this heap.
        unsafe {
            if (*page).flags() & FLAG_IN_FULL != 0 {
                self.unfull(page);
            }
            if (*page).push_local_checked(block) {
                self.page_emptied(page);
            }
        }
    }

    /// The last live block of `page`, not a serving page (P3), was freed by its owner.
    pub fn page_emptied(&self, page: *mut Page) {
        // Purging or unmapping must not change what `errno` says to a C caller of free.
        let _errno = os::ErrnoGuard::save();
        self.free_page(page);
    }

    /// One of the thread's housekeeping ticks: takes the blocks other threads handed over,
    /// and counts toward a publication of the stats.
    ///
    /// A serving page with no live block is not given back here: it never reports itself
    /// empty on a free (P3), and stays until the thread exits or calls `collect`. A sweep
    /// that gave such pages back raised the compiler workload's peak RSS from 12.9 to 17 MiB,
    /// even when it took only pages whose class had allocated nothing for 64 ticks; until
    /// that is understood, there is none.
    pub fn tick(&self) {
        self.process_delayed_free();
        // SAFETY: A1: our own counters.
        unsafe { self.counters.tick() };
    }

    /// Moves a page off the full list back to its class queue.
    fn unfull(&self, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on the full list.
        unsafe {
            self.pages().full.remove(page);
            (*page).set_flag(FLAG_IN_FULL, false);
            (*page).set_delayed_free(DelayedFree::None);
            self.queue_push_back((*page).size_class(), page);
        }
    }

    /// Takes the blocks other threads handed over for our full pages (P4).
    #[inline(always)]
    pub fn process_delayed_free(&self) {
        if !self.delayed_free.load(Ordering::Relaxed).is_null() {
            self.take_delayed_free();
        }
    }

    #[inline(never)]
    fn take_delayed_free(&self) {
        let mut block = self.delayed_free.swap(ptr::null_mut(), Ordering::Acquire);
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

    /// Finds a page of `class` with a free block, making it current; null when out of memory.
    fn find_page(&self, class: SizeClass) -> *mut Page {
        // SAFETY: H1/H2: every page on our queues is ours.
        unsafe {
            let mut page = self.pages().queues[class].first();
            while !page.is_null() {
                (*page).collect();
                // A page carves its next batch even when other threads' frees came back:
                // more blocks on `free` mean fewer trips here. Secure mode of a normal
                // build, which has no fast path, comes here every SECURE_POPS_PER_TICK
                // allocations, and carving each time would spread a page's blocks for nothing.
                if !secure::slow_paths_only() || !(*page).has_free() {
                    (*page).extend();
                }
                if (*page).has_free() {
                    if self.pages().queues[class].first() != page {
                        self.queue_remove(class, page);
                        self.queue_push_front(class, page);
                    }
                    return page;
                }
                // Exhausted: park it on the full list, unless remote frees just arrived.
                if !(*page).try_request_delayed_free() {
                    continue;
                }
                let next = PageQueue::next(page);
                self.queue_remove(class, page);
                self.push_full(page);
                page = next;
            }
        }
        self.fresh_page(class)
    }

    /// Starts a new page for `class` at the front of its queue.
    fn fresh_page(&self, class: SizeClass) -> *mut Page {
        let block_size = class.size();
        // SAFETY: H1: `heap` is our thread's heap; no borrow of our pages is held across.
        let page = unsafe {
            let heap = self.pages().heap;
            (*heap).take_page(SegmentKind::for_block_size(block_size))
        };
        if page.is_null() {
            return page;
        }
        // SAFETY: the page was just taken from one of our segments.
        unsafe {
            let this = self.pages().this;
            (*page).start_serving(class, block_size, this.cast(), self.domain());
            if secure::active() {
                // Before the first block is carved (E2).
                (*page).key = secure::next_key();
            }
            if debug::active() || secure::slow_paths_only() {
                (*page).set_flag(FLAG_SLOW_ONLY, true);
            }
            self.counters.note_class(class);
            (*page).extend();
        }
        self.queue_push_front(class, page);
        page
    }

    /// Returns an empty page (on a class queue or the full list) to its segment.
    fn free_page(&self, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours; the thread heap takes it back.
        unsafe {
            if (*page).flags() & FLAG_IN_FULL != 0 {
                self.pages().full.remove(page);
            } else {
                self.queue_remove((*page).size_class(), page);
            }
            self.counters
                .count_emptied_page((*page).capacity() * (*page).block_size);
            let heap = self.pages().heap;
            (*heap).return_page(page);
        }
    }

    /// Collects every page's frees and returns the pages that are empty.
    pub fn collect_pages(&self) {
        // SAFETY: H1/H2: queue and full pages are ours.
        unsafe {
            for class in 0..CLASS_COUNT {
                let mut page = self.pages().queues[class].first();
                while !page.is_null() {
                    let next = PageQueue::next(page);
                    (*page).collect();
                    if (*page).live_blocks() == 0 {
                        self.free_page(page);
                    }
                    page = next;
                }
            }
            let mut page = self.pages().full.first();
            while !page.is_null() {
                let next = PageQueue::next(page);
                (*page).collect();
                if (*page).has_free() {
                    self.unfull(page);
                    if (*page).live_blocks() == 0 {
                        self.free_page(page);
                    }
                }
                page = next;
            }
        }
    }

    /// Forgets every page (their segments are being abandoned) and retires the counters.
    ///
    /// # Safety
    /// The owning thread is exiting and its segments are off its lists; nothing may use this
    /// domain heap again until it is initialised anew.
    pub unsafe fn retire(&self) {
        // SAFETY: H1, and the caller's promise.
        unsafe {
            let pages = self.pages();
            for class in SizeClass::all() {
                pages.queues[class] = PageQueue::EMPTY;
                // The pages may be another thread's by now: `abandon` took their `SERVING`
                // marks off before letting them go, and none is written here.
                pages.serving[class] = ptr::null_mut();
                pages.refresh_current(class);
            }
            pages.full = PageQueue::EMPTY;
            stats::retire(&self.counters);
        }
    }
}

impl DomainPages {
    /// Points `current[class]` and its direct-table slots at the queue's first page (H2), and
    /// moves the `SERVING` mark to that page (P3). A page that leaves empty stays on its queue,
    /// to be used again or given back by `collect_pages`.
    fn refresh_current(&mut self, class: SizeClass) {
        let first = self.queues[class].first();
        let previous = self.serving[class];
        if previous != first {
            // A serving page leaves `serving` only through `retire`, which forgets it first.
            // SAFETY: H1/H2: the serving page and the queue's first page are ours.
            unsafe {
                if !previous.is_null() {
                    (*previous).set_serving(false);
                }
                if !first.is_null() {
                    (*first).set_serving(true);
                }
            }
            self.serving[class] = first;
        }
        // In debug mode, and secure mode of a normal build, no page is current: every
        // allocation takes the slow path.
        let page = if first.is_null() || debug::active() || secure::slow_paths_only() {
            empty_page()
        } else {
            first
        };
        self.current[class] = page;
        let smallest = class.previous().map_or(0, |smaller| smaller.size() + 1);
        let largest = class.size().min(SMALL_LOOKUP_MAX);
        let mut size = smallest;
        while size <= largest {
            self.direct[(size + 7) >> 3] = page;
            size += 8;
        }
    }
}

const _: () = assert!(HUGE_CLASS as usize >= CLASS_COUNT);
