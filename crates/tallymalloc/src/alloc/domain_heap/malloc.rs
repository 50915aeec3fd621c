//! The malloc paths of a domain heap: the fast path (the direct or current page, one pop) and
//! the slow paths out of line (refill from remote frees, find or make a page, secure mode's
//! checked pops, debug mode's hand-off).

use super::*;
use crate::alloc::size_class::{SizeClass, LARGE_MAX, MIN_ALIGN};

/// Allocates a block for a request of `size <= SMALL_LOOKUP_MAX` bytes from the calling
/// thread's heap for `domain`; null on failure. `zero_bytes` asks for that many leading bytes
/// to be zero.
#[inline(always)]
pub fn malloc_small(domain: Domain, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    debug_assert!(size <= SMALL_LOOKUP_MAX);
    let heap = domain_heap(domain);
    // `heap` is this thread's domain heap or the empty heap, both valid, and the index is at
    // most SMALL_LOOKUP_MAX / 8 < DIRECT_SLOTS.
    // SAFETY: H1 (a valid heap) and H2 (the entry is a valid page).
    unsafe {
        let page = *(*(*heap).pages.get()).direct.get_unchecked((size + 7) >> 3);
        pop_or_slow(heap, page, None, size, zero_bytes, domain)
    }
}

/// Allocates a block of size class `class` (for callers that chose the class themselves) for a
/// request of `size` bytes (`SizeClass::of(size) == class`).
#[inline(always)]
pub fn malloc_class(
    domain: Domain,
    class: SizeClass,
    size: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    debug_assert_eq!(SizeClass::of(size.max(1)), class);
    let heap = domain_heap(domain);
    // SAFETY: as in `malloc_small`; `class` is below CLASS_COUNT.
    unsafe {
        let page = (&(*(*heap).pages.get()).current)[class];
        pop_or_slow(heap, page, Some(class), size, zero_bytes, domain)
    }
}

/// Pops a block from `page`, the current page for `size`, or takes the slow path. `class` is
/// the page's class when the caller knows it already (the medium path computed it), which
/// spares the count a load of it from the page.
///
/// # Safety
/// `heap` must be the calling thread's domain heap for `domain` (or the empty heap) and `page`
/// its current page for requests of `size` bytes (H2), of class `class` if given.
#[inline(always)]
unsafe fn pop_or_slow(
    heap: *mut DomainHeap,
    page: *mut Page,
    class: Option<SizeClass>,
    size: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
) -> *mut u8 {
    // The hardened build checks and clears each link as it pops (secure.rs): it pops first.
    if secure::BUILT_IN {
        // SAFETY: the caller's contract (a valid heap and its current page, H2).
        unsafe {
            let free_is_zero = (*page).free_is_zero;
            let block = (*heap).pop(page, size);
            if !block.is_null() {
                if let Some(bytes) = zero_bytes {
                    zero_block(block, bytes, free_is_zero);
                }
                return block.cast();
            }
            return malloc_slow(heap, size, zero_bytes, domain);
        }
    }
    // The block and its link are read, the allocation counted, and only then is the block
    // taken off `free`: so a sampled allocation leaves `free` as it was, and its cold path
    // pops the block itself. Nothing but the size has to live across that call, which is a
    // jump; popping first, the block had to, and the C pair took 65 instructions, not 62.
    // The empty page's `free` is null, so it is never written.
    // SAFETY: the caller's contract (a valid heap and its current page, H2); P2: the blocks on
    // `free` are free blocks of the page, whose first word is their link.
    unsafe {
        let free_is_zero = (*page).free_is_zero;
        let block = (*page).free;
        if !block.is_null() {
            let next = (*block).next;
            let class = class.unwrap_or_else(|| (*page).size_class());
            if (*heap).count_allocation(class) {
                return sampled_allocation(size, zero_bytes, heap, page);
            }
            (*page).free = next;
            (*page).used += 1;
            if let Some(bytes) = zero_bytes {
                zero_block(block, bytes, free_is_zero);
            }
            return block.cast();
        }
        malloc_slow(heap, size, zero_bytes, domain)
    }
}

/// The fast path's allocation is its class's next profile sample: pops the block the fast path
/// counted (`free`'s first, still in place) and hands it to `DomainHeap::sampled`.
///
/// Its arguments are in the order that leaves `malloc`'s own registers where they are (the
/// size first); the result goes through [`opaque`](crate::platform::opaque::opaque), since a
/// compiler that can tell what a cold call returns may keep a value alive across it in a
/// callee-saved register, which every malloc then pays to save and restore.
///
/// # Safety
/// As `pop_or_slow`; `page`'s `free` is not empty and its first block was just counted.
#[cold]
#[inline(never)]
unsafe fn sampled_allocation(
    size: usize,
    zero_bytes: Option<usize>,
    heap: *mut DomainHeap,
    page: *mut Page,
) -> *mut u8 {
    // SAFETY: the caller's contract; popping leaves `free_is_zero` as it was.
    let block = unsafe {
        let free_is_zero = (*page).free_is_zero;
        let block = (*heap).sampled(page, (*page).pop(), size);
        if let Some(bytes) = zero_bytes {
            zero_block(block, bytes, free_is_zero);
        }
        block.cast::<u8>()
    };
    crate::platform::opaque::opaque(block)
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

/// Every miss of malloc's fast path: debug mode's allocations (no page is current in debug
/// mode, see `refresh_current`, so all of them come here, at no cost to the fast path) and
/// secure mode's, and the refills of normal pages. A dispatcher that saves no register, so
/// secure mode pays for no prologue it does not use.
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
    domain: Domain,
) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe {
        if debug::active() {
            // Straight to debug mode: each frame between it and the program is one more its
            // stack walk steps through.
            if !debug::in_layer() {
                return debug::allocate(domain, size, MIN_ALIGN, zero_bytes.is_some());
            }
            return malloc_generic(heap, SizeClass::of(size), size, zero_bytes, domain);
        }
        if secure::slow_paths_only() {
            malloc_secure(heap, SizeClass::of(size), size, zero_bytes, domain)
        } else {
            malloc_refill(heap, size, zero_bytes, domain)
        }
    }
}

/// The slow path's common cases, kept small so it needs few registers: the current page's
/// `free` ran dry but other threads freed some of its blocks, or it has blocks not carved yet.
/// Everything else, including the housekeeping tick, goes to `malloc_generic`.
///
/// # Safety
/// As [`malloc_slow`].
#[inline(never)]
unsafe fn malloc_refill(
    heap: *mut DomainHeap,
    size: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
) -> *mut u8 {
    let class = SizeClass::of(size);
    // `heap` is this thread's own started domain heap (checked first), and `current[class]` a
    // valid page of ours or the empty page, whose `thread_free` is always empty.
    // SAFETY: H1 lets us change our own heap; H2 makes the page valid.
    unsafe {
        let pages = (*heap).pages.get();
        let page = (&(*pages).current)[class];
        if heap != thread::empty_domain_heap() {
            // Every refill passes here: the class's allocations and frees since the last time
            // go into the drift toward a publication (stats.rs).
            (*heap).settle_class(class);
            if (*pages).slow_paths_until_tick > 0
                && ((*page).has_thread_free() || (*page).has_uncarved())
                && (*heap).delayed_free.load(Ordering::Relaxed).is_null()
            {
                (*pages).slow_paths_until_tick -= 1;
                // As `find_page` would for its first page: take other threads' frees and carve
                // the next batch.
                (*page).collect();
                (*page).extend();
                let free_is_zero = (*page).free_is_zero;
                let block = (*heap).pop(page, size);
                if let Some(bytes) = zero_bytes {
                    zero_block(block, bytes, free_is_zero);
                }
                return block.cast();
            }
        }
    }
    // SAFETY: as above.
    unsafe { malloc_generic(heap, class, size, zero_bytes, domain) }
}

/// The general allocation path: find or make a page of `class`, with the thread's
/// housekeeping on the way.
///
/// # Safety
/// As [`malloc_slow`].
#[cold]
#[inline(never)]
unsafe fn malloc_generic(
    heap: *mut DomainHeap,
    class: SizeClass,
    size: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe { malloc_in_class(heap, class, size, zero_bytes, domain) }
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
    class: SizeClass,
    size: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
) -> *mut u8 {
    // SAFETY: the caller's contract.
    let block = unsafe { first_page_pop(heap, class, size) };
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

/// The stand-in for the fast path where no page is current (secure mode of a normal build,
/// and debug mode's own blocks): a pop from the first page of the class (other threads' frees
/// collected when `free` ran dry), checked if the page is a secure one. Null when that page
/// has no free block or the thread's housekeeping is due: the caller then takes the general
/// path, which ticks.
///
/// # Safety
/// `heap` is this thread's domain heap or the empty one (H1).
#[inline(always)]
unsafe fn first_page_pop(heap: *mut DomainHeap, class: SizeClass, size: usize) -> *mut Block {
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
        if (*page).key != 0 && !secure::BUILT_IN {
            (*heap).pop_secure(page, size)
        } else {
            (*heap).pop(page, size)
        }
    }
}

/// (Inlined into `malloc_generic`, which calls it on every slow path: docs/MEASUREMENTS.md.)
///
/// # Safety
/// As [`malloc_slow`].
#[inline(always)]
unsafe fn malloc_in_class(
    heap: *mut DomainHeap,
    class: SizeClass,
    size: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
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
        // The thread's housekeeping every TICK_EVERY slow paths, on the first slow path after
        // any pause (so that memory due back to the OS goes when the program wakes), and
        // whenever other threads handed blocks of our full pages over (P4), which `find_page`
        // would not see.
        (*heap).follow_profile();
        let handed_over = !(*heap).delayed_free.load(Ordering::Relaxed).is_null();
        let now = os::coarse_millis();
        if (*heap).pages().slow_paths_until_tick == 0
            || handed_over
            || now != (*heap).pages().ticked_at
        {
            (*heap).pages().ticked_at = now;
            (*(*heap).pages().heap).tick();
            (*heap).pages().slow_paths_until_tick = if secure::slow_paths_only() {
                SECURE_POPS_PER_TICK
            } else {
                TICK_EVERY - 1
            };
        } else {
            (*heap).pages().slow_paths_until_tick -= 1;
        }
        let page = (*heap).find_page(class);
        if page.is_null() {
            return crate::platform::os::out_of_memory();
        }
        let free_is_zero = (*page).free_is_zero;
        // Secure pages' links are encoded and checked (secure.rs), and their pops counted;
        // the hardened build's `pop` does the checks itself.
        let block = if (*page).key != 0 && !secure::BUILT_IN {
            (*heap).pop_secure(page, size)
        } else {
            (*heap).pop(page, size)
        };
        debug_assert!(!block.is_null());
        if let Some(bytes) = zero_bytes {
            zero_block(block, bytes, free_is_zero);
        }
        block.cast()
    }
}

/// The core's allocation of `size` bytes without debug mode's hook: for debug mode's own
/// blocks (through [`allocate_core`]) and for aligned requests a class aligns by itself.
/// `allocate.rs`'s `allocate` is the same dispatch with the hook on its huge branch; sharing
/// one dispatch through a closure cost the C malloc+free pair six instructions (70, not 64).
fn allocate_unhooked(domain: Domain, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    if size <= SMALL_LOOKUP_MAX {
        malloc_small(domain, size, zero_bytes)
    } else if size <= LARGE_MAX {
        malloc_class(domain, SizeClass::of(size), size, zero_bytes)
    } else {
        allocate_huge_unhooked(domain, size, MIN_ALIGN, zero_bytes)
    }
}

/// A huge block of its own mapping, counted in `domain` (no debug hook).
pub fn allocate_huge_unhooked(
    domain: Domain,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    counted_huge(domain, huge::alloc(size, align, zero_bytes, domain), size)
}

/// Counts `block`, a huge block just mapped for `domain` for `size` bytes (or null), and
/// returns it.
fn counted_huge(domain: Domain, block: *mut u8, size: usize) -> *mut u8 {
    if !block.is_null() {
        // SAFETY: the block was just allocated.
        count_huge_allocation(domain, block, size, unsafe { huge::huge_block_size(block) });
    }
    block
}

/// A core block for debug mode's layout. The caller (debug.rs) has marked its thread as inside
/// the debug layer, so the slow paths do not hand the request back to it. Debug mode's pages
/// are never current, so small and large blocks come from the first page of their class
/// directly, not through the fast path's miss.
pub fn allocate_core(domain: Domain, size: usize, align: usize) -> *mut u8 {
    if align > MIN_ALIGN || size > LARGE_MAX {
        return allocate_aligned_plain(domain, size, align, None);
    }
    let heap = domain_heap(domain);
    let class = SizeClass::of(size.max(1));
    // SAFETY: `heap` is this thread's domain heap or the empty one (H1).
    unsafe {
        let block = first_page_pop(heap, class, size);
        if !block.is_null() {
            return block.cast();
        }
        malloc_generic(heap, class, size, None, domain)
    }
}

/// A core block for debug mode whose address `lead` bytes in is aligned to `align`, a
/// segment's alignment or more: a huge block a lead short of the boundary (U6 in huge.rs).
pub fn allocate_core_led(domain: Domain, size: usize, align: usize, lead: usize) -> *mut u8 {
    counted_huge(
        domain,
        huge::alloc_led(size, align, lead, None, domain),
        size,
    )
}

pub fn allocate_aligned_plain(
    domain: Domain,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    if align <= MIN_ALIGN {
        return allocate_unhooked(domain, size.max(align), zero_bytes);
    }
    // A class whose blocks all fall on `align` boundaries costs nothing extra.
    let rounded = (size + align - 1) & !(align - 1);
    if rounded <= LARGE_MAX {
        let class = SizeClass::of(rounded);
        if class.alignment().min(crate::alloc::segment::HEADER_RESERVE) >= align {
            return malloc_class(domain, class, rounded, zero_bytes);
        }
    }
    // Otherwise over-allocate and hand out an aligned address inside the block.
    let padded = size + align;
    if padded <= LARGE_MAX && align <= crate::alloc::segment::HEADER_RESERVE {
        let block = malloc_class(
            domain,
            SizeClass::of(padded),
            padded,
            zero_bytes.map(|_| padded),
        );
        if block.is_null() {
            return block;
        }
        let aligned = ((block as usize + align - 1) & !(align - 1)) as *mut u8;
        if aligned != block {
            // SAFETY: `block` was just allocated by this thread.
            unsafe { mark_aligned(block) };
        }
        return aligned;
    }
    allocate_huge_unhooked(domain, size, align, zero_bytes)
}
