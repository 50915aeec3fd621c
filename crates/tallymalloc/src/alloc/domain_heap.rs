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
//! Invariants:
//! - **H1 ownership**: a domain heap's `pages` are touched only by the thread whose heap it
//!   belongs to (see `thread.rs`), or by that thread's exit handler; other threads touch only
//!   `delayed_free` and read `counters`. No `&mut DomainPages` is held across a call into the
//!   thread's [`Heap`], which may requeue pages into any of its domain heaps (adoption).
//! - **H2 current**: `current[c]` is the first page of `queues[c]`, or the shared empty page
//!   (whose free list is always empty) when the queue is empty; `direct[(n + 7) / 8]` is
//!   `current[class_of(n)]` for every `n <= SMALL_LOOKUP_MAX`. Pages in `queues[c]` serve class
//!   `c` and are not flagged full; pages on `full` have `FLAG_IN_FULL` and a `Use` delayed-free
//!   tag requested while their thread list was empty (P4). Every page on them has this heap's
//!   domain and this heap as its owner.
//! - **H5 no self-allocation**: nothing here calls malloc.

use crate::alloc::heap::Heap;
use crate::alloc::huge;
use crate::alloc::page::{
    Block, DelayedFree, Page, FLAG_HAS_ALIGNED, FLAG_IN_FULL, FLAG_SLOW_ONLY, HUGE_CLASS,
};
use crate::alloc::segment::{segment_of, Segment, SegmentKind};
use crate::alloc::size_class::{class_of, class_size, CLASS_COUNT, SMALL_LOOKUP_MAX};
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
    /// Owner frees until the next `heartbeat`.
    frees_until_heartbeat: u32,
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
            frees_until_heartbeat: HEARTBEAT_FREES,
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
        pages.domain = domain.id() as u8;
        // SAFETY: the caller gives us the memory.
        unsafe {
            ptr::write(&raw mut (*this).pages, UnsafeCell::new(pages));
            ptr::write(
                &raw mut (*this).delayed_free,
                AtomicPtr::new(ptr::null_mut()),
            );
            stats::activate(&raw const (*this).counters, domain.id());
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

    pub fn domain(&self) -> usize {
        // SAFETY: `domain` is written once, before the heap is published to its thread.
        unsafe { (*self.pages.get()).domain as usize }
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
fn domain_heap(domain: usize) -> *mut DomainHeap {
    let heap = thread::current_heap();
    if domain == Domain::RAW.id() {
        // The raw domain heap is the thread heap's first field.
        heap.cast()
    } else {
        // SAFETY: the thread heap (or the empty heap) is valid, and `domain < MAX_DOMAINS`.
        unsafe { Heap::domain_heap(heap, domain) }
    }
}

/// Allocates a block for a request of `size <= SMALL_LOOKUP_MAX` bytes from the calling
/// thread's heap for `domain`; null on failure. `zero_bytes` asks for that many leading bytes
/// to be zero.
#[inline(always)]
pub fn malloc_small(domain: usize, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    debug_assert!(size <= SMALL_LOOKUP_MAX);
    let heap = domain_heap(domain);
    // `heap` is this thread's domain heap or the empty heap, both valid, and the index is at
    // most SMALL_LOOKUP_MAX / 8 < DIRECT_SLOTS.
    // SAFETY: H1 (a valid heap) and H2 (the entry is a valid page).
    unsafe {
        let page = *(*(*heap).pages.get()).direct.get_unchecked((size + 7) >> 3);
        pop_or_slow(heap, page, size, zero_bytes, domain)
    }
}

/// Allocates a block of size class `class` (for callers that chose the class themselves) for a
/// request of `size` bytes (`class_of(size) == class`).
#[inline(always)]
pub fn malloc_class(
    domain: usize,
    class: usize,
    size: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    debug_assert_eq!(class_of(size.max(1)), class);
    let heap = domain_heap(domain);
    // SAFETY: as in `malloc_small`; `class` is below CLASS_COUNT.
    unsafe {
        let page = *(*(*heap).pages.get()).current.get_unchecked(class);
        pop_or_slow(heap, page, size, zero_bytes, domain)
    }
}

/// Pops a block from `page`, the current page for `size`, or takes the slow path.
///
/// # Safety
/// `heap` must be the calling thread's domain heap for `domain` (or the empty heap) and `page`
/// its current page for requests of `size` bytes (H2).
#[inline(always)]
unsafe fn pop_or_slow(
    heap: *mut DomainHeap,
    page: *mut Page,
    size: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    // Page::pop only writes a page that has a block, which the empty page never has.
    // SAFETY: the caller's contract (a valid heap and its current page, H2).
    unsafe {
        let free_is_zero = (*page).free_is_zero;
        let block = (*heap).pop(page);
        if !block.is_null() {
            if let Some(bytes) = zero_bytes {
                zero_block(block, bytes, free_is_zero);
            }
            return block.cast();
        }
        malloc_slow(heap, size, zero_bytes, domain)
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

/// Every miss of malloc's fast path: secure mode's allocations (debug mode, on too, takes
/// them in `malloc_generic` instead), and the refills of normal pages. A dispatcher that saves
/// no register, so secure mode pays for no prologue it does not use.
/// Takes the request's size rather than its class, so the fast path keeps no class in a
/// register for it.
///
/// # Safety
/// `heap` must be the calling thread's domain heap for `domain` (or the empty heap), as the
/// fast path found it (H1).
#[cold]
#[inline(never)]
unsafe fn malloc_slow(
    heap: *mut DomainHeap,
    size: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        if secure::slow_paths_only() && !debug::active() {
            malloc_secure(heap, class_of(size), size, zero_bytes, domain)
        } else {
            malloc_refill(heap, size, zero_bytes, domain)
        }
    }
}

/// The slow path's common case, kept small so it needs few registers: the current page's
/// `free` ran dry but other threads freed some of its blocks. Everything else, including the
/// housekeeping tick, goes to `malloc_generic`.
///
/// # Safety
/// As [`malloc_slow`].
#[inline(never)]
unsafe fn malloc_refill(
    heap: *mut DomainHeap,
    size: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    let class = class_of(size);
    // `heap` is this thread's own started domain heap (checked first), and `current[class]` a
    // valid page of ours or the empty page, whose `thread_free` is always empty.
    // SAFETY: H1 lets us change our own heap; H2 makes the page valid.
    unsafe {
        let pages = (*heap).pages.get();
        let page = *(*pages).current.get_unchecked(class);
        if heap != thread::empty_domain_heap() {
            // Every refill passes here: the class's allocations and frees since the last time
            // go into the drift toward a publication (stats.rs).
            (*heap).settle_class(class);
            if (*pages).slow_paths_until_tick > 0
                && (*page).has_thread_free()
                && (*heap).delayed_free.load(Ordering::Relaxed).is_null()
            {
                (*pages).slow_paths_until_tick -= 1;
                (*page).collect();
                let block = (*heap).pop(page);
                if let Some(bytes) = zero_bytes {
                    zero_block(block, bytes, false);
                }
                return block.cast();
            }
        }
    }
    // SAFETY: as above.
    unsafe { malloc_generic(heap, class, size, zero_bytes, domain) }
}

/// Every allocation that misses the fast paths comes here: in debug mode, all of them (the
/// pages' free lists are never current, see `refresh_current`), so this is where debug mode
/// takes its requests, at no cost to the fast path.
///
/// # Safety
/// As [`malloc_slow`].
#[cold]
#[inline(never)]
unsafe fn malloc_generic(
    heap: *mut DomainHeap,
    class: usize,
    size: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    if debug::active() && !debug::in_layer() {
        return debug::allocate(
            domain,
            size,
            crate::alloc::allocate::MIN_ALIGN,
            zero_bytes.is_some(),
        );
    }
    // SAFETY: the caller's contract.
    unsafe { malloc_in_class(heap, class, zero_bytes, domain) }
}

/// Secure mode's allocations, all of which miss the fast path (no page is current): a checked
/// pop from the class's first page, or `malloc_generic` when that page has no free block or
/// the thread's housekeeping is due. Kept apart from `malloc_generic` so that it needs few
/// registers.
///
/// # Safety
/// As [`malloc_slow`].
#[cold]
#[inline(never)]
unsafe fn malloc_secure(
    heap: *mut DomainHeap,
    class: usize,
    size: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    // SAFETY: the caller's contract.
    let block = unsafe { secure_pop(heap, class) };
    if block.is_null() {
        // SAFETY: the caller's contract.
        return unsafe { malloc_generic(heap, class, size, zero_bytes, domain) };
    }
    if let Some(bytes) = zero_bytes {
        // SAFETY: a block of at least `bytes` bytes, just taken.
        unsafe { zero_block(block, bytes, false) };
    }
    block.cast()
}

/// Secure mode's stand-in for the fast path, which never sees a secure page: a checked pop
/// from the first page of the class (other threads' frees collected when `free` ran dry).
/// Null when that page has no free block or the thread's housekeeping is due: the caller then
/// takes the general path, which ticks.
///
/// # Safety
/// `heap` is this thread's domain heap or the empty one (H1).
#[inline(always)]
unsafe fn secure_pop(heap: *mut DomainHeap, class: usize) -> *mut Block {
    // The empty heap's queues are empty, and its tick countdown stays 0.
    // SAFETY: H1/H2: pages on our queues are ours.
    unsafe {
        let pages = (*heap).pages();
        let page = pages.queues[class].first();
        if page.is_null() || pages.slow_paths_until_tick == 0 {
            return ptr::null_mut();
        }
        if !(*page).has_free() {
            if !(*page).has_thread_free() {
                return ptr::null_mut();
            }
            (*page).collect();
        }
        pages.slow_paths_until_tick -= 1;
        (*heap).pop_secure(page)
    }
}

/// (Inlined into `malloc_generic`: a call between them cost glibc-simple 5% of its
/// instructions.)
///
/// # Safety
/// As [`malloc_slow`].
#[inline(always)]
unsafe fn malloc_in_class(
    heap: *mut DomainHeap,
    class: usize,
    zero_bytes: Option<usize>,
    domain: usize,
) -> *mut u8 {
    let heap = if heap == thread::empty_domain_heap() {
        match thread::start_domain_heap(domain) {
            Ok(heap) => heap,
            Err(errno) => {
                os::set_errno(errno);
                return ptr::null_mut();
            }
        }
    } else {
        heap
    };
    // SAFETY: `heap` is this thread's live domain heap (H1).
    unsafe {
        (*(*heap).pages().heap).tick();
        (*heap).pages().slow_paths_until_tick = if secure::slow_paths_only() {
            SECURE_POPS_PER_TICK
        } else {
            TICK_EVERY - 1
        };
        let page = (*heap).find_page(class);
        if page.is_null() {
            return crate::alloc::allocate::failed();
        }
        let free_is_zero = (*page).free_is_zero;
        // Secure pages' links are encoded and checked (secure.rs), and their pops counted;
        // the hardened build's `pop` does the checks itself.
        let block = if (*page).key != 0 && !secure::BUILT_IN {
            (*heap).pop_secure(page)
        } else {
            (*heap).pop(page)
        };
        debug_assert!(!block.is_null());
        if let Some(bytes) = zero_bytes {
            zero_block(block, bytes, free_is_zero);
        }
        block.cast()
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

/// Frees a block of a small, medium or large page, or a huge block, through the `domain`
/// family.
///
/// # Safety
/// `address` must be a live pointer handed out by this allocator.
#[inline(always)]
pub unsafe fn free(domain: usize, address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe {
        if !free_local(domain, address) {
            // Tested only off the fast path, so it costs normal frees nothing.
            if secure::slow_paths_only() {
                free_secure(domain, address);
            } else {
                free_slow(domain, address);
            }
        }
    }
}

/// The free fast path: frees `address` and returns true if its page is this thread's, of
/// `domain`, with no flag set; returns false, touching nothing, otherwise.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
unsafe fn free_local(domain: usize, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_owned::<false>(domain, address) }
}

/// [`free_local`] when the owner's page is a secure page of a normal build: flagged
/// `FLAG_SLOW_ONLY` and nothing else, its links encoded and checked.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
unsafe fn free_secure_local(domain: usize, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_owned::<true>(domain, address) }
}

/// Frees `address` and returns true if its page is this thread's, of `domain`, with no flag
/// set but `FLAG_SLOW_ONLY` when `SECURE`; returns false, touching nothing, otherwise.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
unsafe fn free_owned<const SECURE: bool>(domain: usize, address: *mut u8) -> bool {
    let heap = domain_heap(domain);
    let flags = if SECURE { FLAG_SLOW_ONLY } else { 0 };
    // The caller guarantees `address` is ours and live, so its segment header and page are
    // mapped. An owner word equal to our domain heap (and the expected flags) means the page
    // is ours, of this family.
    // SAFETY: S2 (the header is readable) and P1 (only the owner changes the page).
    unsafe {
        let segment = segment_of(address);
        let page = (*segment).page_of(address);
        // Not the start of a block (P6): the slow path reports it.
        if (*page).owner.load(Ordering::Relaxed) != heap as usize | flags
            || !(*page).is_own_block_start(address)
        {
            return false;
        }
        (*heap).counters.count_fast_free((*page).class as usize);
        let emptied = if SECURE {
            (*page).push_local_checked(address.cast())
        } else {
            (*page).push_local(address.cast())
        };
        if emptied {
            // The page is found again from the address out of line, so the fast path keeps
            // it in addressing modes instead of a register.
            page_emptied_at(heap, address);
        } else {
            let pages = (*heap).pages.get();
            (*pages).frees_until_heartbeat -= 1;
            if (*pages).frees_until_heartbeat == 0 {
                heartbeat(heap);
            }
        }
    }
    true
}

/// The thread's housekeeping, every [`HEARTBEAT_FREES`] of the owner's frees in a domain
/// (but those that empty a page, which go their own way). The owner's frees go straight back
/// on `free`, so a thread in a steady loop of malloc and free may never take a slow path, and
/// its purges and delayed frees would wait forever: a program that freed 32 MiB and then
/// looped kept it all. (On free rather than malloc, whose block would have to be kept in a
/// saved register across the call.)
///
/// # Safety
/// `heap` is this thread's started domain heap (H1), with nothing of it borrowed.
#[cold]
#[inline(never)]
unsafe fn heartbeat(heap: *mut DomainHeap) {
    // SAFETY: the caller's contract.
    unsafe {
        (*heap).pages().frees_until_heartbeat = HEARTBEAT_FREES;
        let _errno = os::ErrnoGuard::save();
        (*(*heap).pages().heap).tick();
    }
}

/// Frees `address` and returns true if it is a block of `domain`; returns false and leaves it
/// alone if it belongs to another domain. The owner's own page takes `free`'s fast path.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
pub unsafe fn free_if_of(domain: usize, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_local(domain, address) || free_if_of_slow(domain, address) }
}

/// # Safety
/// `address` must be a live block of ours.
#[cold]
#[inline(never)]
unsafe fn free_if_of_slow(domain: usize, address: *mut u8) -> bool {
    // SAFETY: the caller's contract: a live block of ours.
    unsafe {
        if domain_of(address) != domain {
            return false;
        }
        free_slow(domain, address);
    }
    true
}

/// Every free in secure mode of a normal build, whose pages all miss `free_local`: the
/// owner's frees are served here, with few registers to save; the rest go to `free_slow`.
///
/// # Safety
/// `address` must be a live block of ours.
#[cold]
#[inline(never)]
unsafe fn free_secure(domain: usize, address: *mut u8) {
    // Debug mode, on too, checks every free itself in `free_slow`.
    // SAFETY: the caller's contract.
    unsafe {
        if debug::active() || !free_secure_local(domain, address) {
            free_slow(domain, address);
        }
    }
}

/// # Safety
/// `heap` is the calling thread's domain heap, and a free into it just emptied the page
/// holding `address` (H1).
#[cold]
#[inline(never)]
unsafe fn page_emptied_at(heap: *mut DomainHeap, address: *mut u8) {
    // SAFETY: `free` just emptied the page holding `address`, which our heap owns (H1).
    unsafe { (*heap).page_emptied((*segment_of(address)).page_of(address)) }
}

/// The domain of the live block at `address`.
///
/// # Safety
/// `address` must be a live block of ours.
pub unsafe fn domain_of(address: *const u8) -> usize {
    // SAFETY: the block is live, so its segment header and page are mapped and constant (S2).
    unsafe {
        let segment = segment_of(address);
        if (*segment).kind == SegmentKind::Huge {
            (*segment).pages[0].domain as usize
        } else {
            (*(*segment).page_of(address)).domain as usize
        }
    }
}

/// Every free that is not the owner's flagless local free: mismatched families, huge blocks,
/// flagged pages, remote frees.
///
/// # Safety
/// `address` must be a live block of ours.
#[cold]
#[inline(never)]
unsafe fn free_slow(domain: usize, address: *mut u8) {
    // Debug blocks' pages are flagged, so their frees all come here (FLAG_SLOW_ONLY).
    if debug::active() {
        // Debug mode's reports and quarantine must not change what `errno` says to C.
        let _errno = os::ErrnoGuard::save();
        // SAFETY: debug mode checks the pointer itself.
        return unsafe { debug::free(domain, address) };
    }
    // The segment and page are read once for the family check and the free.
    // SAFETY: as in `free`: the header and page of a live block are mapped (S2).
    unsafe {
        let segment = segment_of(address);
        if (*segment).kind == SegmentKind::Huge {
            if address != (*segment).pages[0].area {
                return crate::debug::diagnostics::report_not_a_block_start(
                    b"free",
                    address as usize,
                );
            }
            return free_huge_block(domain, segment, address);
        }
        let page = (*segment).page_of(address);
        let owner_domain = (*page).domain as usize;
        if owner_domain != domain {
            crate::policy::domain::mismatch(b"free", domain, owner_domain, address as usize);
        }
        free_in_page(owner_domain, page, address);
    }
}

/// Frees the block at `address` of `domain` (its own), from any thread.
///
/// # Safety
/// `address` must be a live block of `domain`.
pub unsafe fn free_in_own_domain(domain: usize, address: *mut u8) {
    // SAFETY: the caller's contract; the header and page are mapped (S2).
    unsafe {
        let segment = segment_of(address);
        if (*segment).kind == SegmentKind::Huge {
            if address != (*segment).pages[0].area {
                return crate::debug::diagnostics::report_not_a_block_start(
                    b"free",
                    address as usize,
                );
            }
            free_huge(domain, segment);
        } else {
            free_in_page(domain, (*segment).page_of(address), address);
        }
    }
}

/// Frees the huge block `address` of `segment` through `domain`'s family, from any thread,
/// reporting a mismatch: for the slow path, and for blocks aligned beyond a segment, which
/// the entry points find by their segment (U6 in huge.rs).
///
/// # Safety
/// `segment` must be the huge segment of the live block `address`.
pub unsafe fn free_huge_block(domain: usize, segment: *mut Segment, address: *mut u8) {
    // SAFETY: the caller's contract; the header is mapped (S2).
    let owner_domain = unsafe { (*segment).pages[0].domain as usize };
    if owner_domain != domain {
        crate::policy::domain::mismatch(b"free", domain, owner_domain, address as usize);
    }
    // SAFETY: the caller's contract.
    unsafe { free_huge(owner_domain, segment) }
}

/// Frees the huge block of `domain` in `segment`, from any thread.
///
/// # Safety
/// `segment` must be the huge segment of a live block of `domain`.
#[cold]
unsafe fn free_huge(domain: usize, segment: *mut Segment) {
    // Unmapping must not change what `errno` says to a C caller of free.
    let _errno = os::ErrnoGuard::save();
    let mine = counting_heap(domain);
    // SAFETY: the caller's contract; the header is mapped (S2).
    unsafe {
        let usable = (*segment).pages[0].block_size;
        if mine == thread::empty_domain_heap() {
            stats::count_orphan_huge_free(domain, usable);
        } else {
            (*mine).counters.count_huge_free(usable);
        }
        huge::free(segment);
    }
}

/// Frees the block at `address` of `domain` in `page`, from any thread. Makes no system call
/// but through `page_emptied`, which keeps `errno` itself, so remote frees pay for no guard.
///
/// # Safety
/// `address` must be a live block of `domain` in `page`, a small, medium or large page.
#[inline(always)]
unsafe fn free_in_page(domain: usize, page: *mut Page, address: *mut u8) {
    // SAFETY: the caller's contract: the page is mapped (S2).
    let Some(block) = (unsafe { block_at(page, address) }) else {
        return crate::debug::diagnostics::report_not_a_block_start(b"free", address as usize);
    };
    let mine = counting_heap(domain);
    // SAFETY: the caller's contract.
    unsafe {
        let (class, block_size) = ((*page).class as usize, (*page).block_size);
        if mine == thread::empty_domain_heap() {
            stats::count_orphan_free(domain, class, block_size);
        } else {
            (*mine).counters.count_free(class, block_size);
        }
        if (*page).owner_heap() == mine.cast() {
            (*mine).free_local(page, block.cast());
            return;
        }
        if secure::active() {
            (*page).check_remote_free(block.cast());
        }
        // P4: while the page holds the block for it, the owner can neither abandon the page
        // nor free its heap, so `owner` is a live domain heap.
        (*page).free_remote(block.cast(), |owner, block| {
            DomainHeap::push_delayed_free(owner.cast(), block)
        });
    }
}

/// The block of `page` that a free of `address` frees: `address` itself if it starts a carved
/// block (P6), or on a page that hands out aligned offsets the block that holds it; `None` for
/// any other address, which must not reach a free list.
///
/// # Safety
/// `page` must be a mapped page of a segment of ours.
#[inline(always)]
unsafe fn block_at(page: *mut Page, address: *mut u8) -> Option<*mut u8> {
    // SAFETY: the caller's contract.
    unsafe {
        let block = if (*page).flags() & FLAG_HAS_ALIGNED != 0 && address >= (*page).area {
            (*page).block_start(address)
        } else {
            address
        };
        ((*page).in_use && (*page).is_block_start(block)).then_some(block)
    }
}

/// Whether `address`, in a registered segment, is where a block of ours starts, or lies in
/// one handed out at an offset for alignment: what `free`, `realloc` and `malloc_usable_size`
/// accept. (A freed block still starts where it did; blocks carry no mark of being live.)
///
/// # Safety
/// `address` must lie in the first `SEGMENT_SIZE` of a registered segment (`registry.rs`).
pub unsafe fn is_block(address: usize) -> bool {
    let address = address as *mut u8;
    // SAFETY: the caller's contract: the segment's header and pages are mapped (S2).
    unsafe {
        let segment = segment_of(address);
        if (*segment).kind == SegmentKind::Huge {
            return address == (*segment).pages[0].area;
        }
        block_at((*segment).page_of(address), address).is_some()
    }
}

/// The calling thread's domain heap for `domain`, to count an operation in. A thread that
/// frees before it allocates gets one now, so that its counts stay in its own counters rather
/// than in atomics every such thread shares; if that fails, the empty heap (whose callers
/// count in the shared "orphan" totals).
fn counting_heap(domain: usize) -> *mut DomainHeap {
    let mine = domain_heap(domain);
    if mine != thread::empty_domain_heap() || !stats::ENABLED {
        return mine;
    }
    start_counting_heap(domain, mine)
}

#[cold]
#[inline(never)]
fn start_counting_heap(domain: usize, empty: *mut DomainHeap) -> *mut DomainHeap {
    // A failed mapping must not change what `errno` says to a C caller of free.
    let _errno = os::ErrnoGuard::save();
    thread::start_domain_heap(domain).unwrap_or(empty)
}

/// Counts a huge block allocated for `domain` by the calling thread.
pub fn count_huge_allocation(domain: usize, usable: usize) {
    let mine = counting_heap(domain);
    if mine == thread::empty_domain_heap() {
        stats::count_orphan_huge_allocation(domain, usable);
    } else {
        // SAFETY: our own live domain heap; counters are written by their owner only (A1).
        unsafe { (*mine).counters.count_huge_allocation(usable) };
    }
}

/// Counts a huge block of `domain` resized from `old_usable` to `new_usable` bytes: a free of
/// the old size and an allocation of the new one.
pub fn count_huge_resize(domain: usize, old_usable: usize, new_usable: usize) {
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
    /// Pops a block of `page` (ours, or the empty page) and counts it; null when `free` is
    /// empty.
    #[inline(always)]
    fn pop(&self, page: *mut Page) -> *mut Block {
        // `Page::pop` writes only a page with a free block, which the empty page never has.
        // SAFETY: H1: the page is ours, or the empty page.
        let block = unsafe { (*page).pop() };
        if !block.is_null() {
            self.count_allocation(page);
        }
        block
    }

    /// Counts a block just popped from `page`, a page of ours.
    #[inline(always)]
    fn count_allocation(&self, page: *mut Page) {
        // SAFETY: A1: our own counters; the page is ours (H1), so its class is valid.
        unsafe { self.counters.count_allocation((*page).class as usize) };
    }

    /// Takes `class`'s allocations and frees since the last time into the counters' drift
    /// (stats.rs).
    #[inline]
    fn settle_class(&self, class: usize) {
        // SAFETY: A1: our own counters; `class` is below CLASS_COUNT.
        unsafe { self.counters.settle_class(class) };
    }

    /// Pops a block of `page`, a secure page of a normal build with a free block, and counts
    /// it.
    fn pop_secure(&self, page: *mut Page) -> *mut Block {
        // SAFETY: H1: the page is ours.
        let block = unsafe { (*page).pop_secure() };
        self.count_allocation(page);
        block
    }

    fn queue_push_front(&self, class: usize, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe {
            let pages = self.pages();
            pages.queues[class].push_front(page);
            pages.refresh_current(class);
        }
    }

    pub(crate) fn queue_push_back(&self, class: usize, page: *mut Page) {
        // SAFETY: H1/H2: the page is ours and on no queue.
        unsafe {
            let pages = self.pages();
            pages.queues[class].push_back(page);
            pages.refresh_current(class);
        }
    }

    fn queue_remove(&self, class: usize, page: *mut Page) {
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
            self.queue_push_back((*page).class as usize, page);
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
    fn find_page(&self, class: usize) -> *mut Page {
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
    fn fresh_page(&self, class: usize) -> *mut Page {
        let block_size = class_size(class);
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
            (*page).start_serving(class as u8, block_size, this.cast(), self.domain() as u8);
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
                self.queue_remove((*page).class as usize, page);
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
            for class in 0..CLASS_COUNT {
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
    fn refresh_current(&mut self, class: usize) {
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
}

const _: () = assert!(HUGE_CLASS as usize >= CLASS_COUNT);
