//! The free paths of a domain heap: the owner's fast path (the owner word and the block-start
//! check, then one push), and the slow paths out of line (remote frees, full pages, huge
//! blocks, family mismatches, interior pointers, secure and debug mode).

use super::*;

/// Frees a block of a small, medium or large page, or a huge block, through the `domain`
/// family.
///
/// # Safety
/// `address` must be a live pointer handed out by this allocator.
#[inline(always)]
pub unsafe fn free(domain: Domain, address: *mut u8) {
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
unsafe fn free_local(domain: Domain, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_owned::<0>(domain, address) }
}

/// [`free_local`] when the owner's page is a secure page of a normal build: flagged
/// `FLAG_SLOW_ONLY` and nothing else, its links encoded and checked.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
unsafe fn free_secure_local(domain: Domain, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_owned::<FLAG_SLOW_ONLY>(domain, address) }
}

/// [`free_local`] when the owner's page holds profile samples (flagged `FLAG_SAMPLED` and
/// nothing else): the block is taken out of the profile if it is a sample, then freed as the
/// fast path frees. Without it, every free of such a page took the general slow path, and a
/// program that frees in batches took a tenth more instructions with profiling on. Called
/// only for a page that has the flag, so other slow frees pay one test of the page's owner
/// word (calling it on every slow free cost cross-thread frees 20 instructions each).
///
/// # Safety
/// `address` must be a live block of ours, on `page` (S2).
#[inline(never)]
unsafe fn free_sampled_local(domain: Domain, page: *mut Page, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_owned_on::<FLAG_SAMPLED>(domain, page, address) }
}

/// Frees `address` and returns true if its page is this thread's, of `domain`, with exactly the
/// flags `FLAGS` (none, `FLAG_SLOW_ONLY` for secure pages or `FLAG_SAMPLED`); returns false,
/// touching nothing, otherwise.
///
/// # Safety
/// `address` must be a live block of ours.
#[inline(always)]
unsafe fn free_owned<const FLAGS: usize>(domain: Domain, address: *mut u8) -> bool {
    // The caller guarantees `address` is ours and live, so its segment header and page are
    // mapped (S2).
    // SAFETY: the caller's contract.
    unsafe { free_owned_on::<FLAGS>(domain, (*segment_of(address)).page_of(address), address) }
}

/// [`free_owned`] of a block whose page the caller has found.
///
/// # Safety
/// `address` must be a live block of ours, on `page`.
#[inline(always)]
unsafe fn free_owned_on<const FLAGS: usize>(
    domain: Domain,
    page: *mut Page,
    address: *mut u8,
) -> bool {
    const SECURE_FLAGS: usize = FLAG_SLOW_ONLY;
    let heap = domain_heap(domain);
    let flags = FLAGS;
    // An owner word equal to our domain heap (and the expected flags) means the page is ours,
    // of this family.
    // SAFETY: S2 (the page is readable) and P1 (only the owner changes the page).
    unsafe {
        // Not the start of a block (P6): the slow path reports it.
        if (*page).owner.load(Ordering::Relaxed) != heap as usize | flags
            || !(*page).is_own_block_start(address)
        {
            return false;
        }
        if FLAGS == FLAG_SAMPLED {
            release_if_sample(page, address, heap);
        }
        (*heap).counters.count_fast_free((*page).size_class());
        let emptied = if FLAGS == SECURE_FLAGS {
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
pub unsafe fn free_if_of(domain: Domain, address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_local(domain, address) || free_if_of_slow(domain, address) }
}

/// # Safety
/// `address` must be a live block of ours.
#[cold]
#[inline(never)]
unsafe fn free_if_of_slow(domain: Domain, address: *mut u8) -> bool {
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
unsafe fn free_secure(domain: Domain, address: *mut u8) {
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
pub unsafe fn domain_of(address: *const u8) -> Domain {
    // SAFETY: the block is live, so its segment header and page are mapped and constant (S2).
    unsafe {
        let segment = segment_of(address);
        let page = if (*segment).kind == SegmentKind::Huge {
            &raw const (*segment).pages[0]
        } else {
            (*segment).page_of(address)
        };
        Domain::from_stored((*page).domain)
    }
}

/// Every free that is not the owner's flagless local free: mismatched families, huge blocks,
/// flagged pages, remote frees.
///
/// # Safety
/// `address` must be a live block of ours.
#[cold]
#[inline(never)]
unsafe fn free_slow(domain: Domain, address: *mut u8) {
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
                return crate::policy::misuse::report_not_a_block_start(b"free", address as usize);
            }
            return free_huge_block(domain, segment, address);
        }
        let page = (*segment).page_of(address);
        // Only a page flagged for samples can hold one (PF1); the owner's frees of it have a
        // path of their own.
        let owner = (*page).owner.load(Ordering::Relaxed);
        if owner & FLAG_SAMPLED != 0
            && owner == domain_heap(domain) as usize | FLAG_SAMPLED
            && free_sampled_local(domain, page, address)
        {
            return;
        }
        let owner_domain = Domain::from_stored((*page).domain);
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
pub unsafe fn free_in_own_domain(domain: Domain, address: *mut u8) {
    // SAFETY: the caller's contract; the header and page are mapped (S2).
    unsafe {
        let segment = segment_of(address);
        if (*segment).kind == SegmentKind::Huge {
            if address != (*segment).pages[0].area {
                return crate::policy::misuse::report_not_a_block_start(b"free", address as usize);
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
pub unsafe fn free_huge_block(domain: Domain, segment: *mut Segment, address: *mut u8) {
    // SAFETY: the caller's contract; the header is mapped (S2).
    let owner_domain = unsafe { Domain::from_stored((*segment).pages[0].domain) };
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
unsafe fn free_huge(domain: Domain, segment: *mut Segment) {
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
        if crate::profile::ever_enabled() {
            crate::profile::released((*segment).pages[0].area as usize);
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
unsafe fn free_in_page(domain: Domain, page: *mut Page, address: *mut u8) {
    // SAFETY: the caller's contract: the page is mapped (S2).
    let Some(block) = (unsafe { block_at(page, address) }) else {
        return crate::policy::misuse::report_not_a_block_start(b"free", address as usize);
    };
    let mine = counting_heap(domain);
    // SAFETY: the caller's contract.
    unsafe {
        let (class, block_size) = ((*page).size_class(), (*page).block_size);
        if mine == thread::empty_domain_heap() {
            stats::count_orphan_free(domain, class, block_size);
        } else {
            (*mine).counters.count_free(class, block_size);
        }
        let (owner, flags) = (*page).owner_and_flags();
        if flags & FLAG_SAMPLED != 0 {
            release_if_sample(page, block, mine);
        }
        if owner == mine.cast() {
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

/// Takes `block`, about to be freed from `page` (flagged `FLAG_SAMPLED`), out of the profile
/// if it is a sample. With one sample live and known by the page's hint, the free of any other
/// block ends here, inline, having looked nothing up (PF4: the hint is read before the count).
///
/// # Safety
/// `block` must be a live block of `page`, and `mine` the calling thread's domain heap.
#[inline(always)]
unsafe fn release_if_sample(page: *mut Page, block: *mut u8, mine: *mut DomainHeap) {
    // SAFETY: the caller's contract: the page is mapped.
    let (hint, live) = unsafe {
        let hint = (*page).sample_hint.load(Ordering::Acquire);
        (hint, (*page).sampled.load(Ordering::Acquire))
    };
    let lone_other_sample = live == 1 && hint != 0 && hint != block as usize;
    // With no sample live, only the owner has anything to do (clear the flag).
    // SAFETY: the caller's contract: the page is mapped.
    let nothing_to_do = live == 0 && unsafe { (*page).owner_heap() } != mine.cast();
    if !lone_other_sample && !nothing_to_do {
        // SAFETY: the caller's contract.
        unsafe { release_sample(page, block, mine, live) };
    }
}

/// [`release_if_sample`]'s look-up: takes `block` out of the profile if it is a sample, and
/// clears the flag when the page's owner finds no sample left (PF1: only the owner adds
/// samples, so none can arrive meanwhile). `live` is the page's count of samples as read.
///
/// # Safety
/// As [`release_if_sample`].
#[cold]
#[inline(never)]
unsafe fn release_sample(page: *mut Page, block: *mut u8, mine: *mut DomainHeap, live: u32) {
    // SAFETY: the caller's contract: the page is mapped; `owner` is written by its owner only.
    unsafe {
        if live != 0 && crate::profile::released(block as usize) {
            // PF4: the hint goes before the count, so no thread sees it with a count of one
            // while another sample is the live one.
            let _ = (*page).sample_hint.compare_exchange(
                block as usize,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            (*page).sampled.fetch_sub(1, Ordering::AcqRel);
        }
        if (*page).owner_heap() == mine.cast() && (*page).sampled.load(Ordering::Acquire) == 0 {
            (*page).set_flag(FLAG_SAMPLED, false);
        }
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
