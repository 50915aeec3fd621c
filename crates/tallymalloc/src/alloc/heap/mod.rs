//! Heaps: each thread's segments, free-page purges and spare segments, and the table of its
//! domain heaps.
//!
//! A thread's pages of each domain live in a [`DomainHeap`]; the pages themselves come from
//! segments the thread's `Heap` owns, which every domain shares, so a program that allocates in
//! three domains holds one set of segments, not three. The raw domain heap is the heap's first
//! field: the thread-local pointer is both, and the `malloc` fast path reaches its pages with no
//! extra load.
//!
//! Invariants:
//! - **H1 ownership**: a heap's `state` and its domain heaps' pages are touched only by the
//!   thread whose thread-local pointer holds it (see `thread.rs`), or by that thread's exit
//!   handler. No `&mut HeapState` is held across a call into a domain heap, which may call back
//!   here to return a page.
//! - **H3 segments**: `segments` links every segment this heap owns; those of small and medium
//!   kind with a free page are also on `with_free[kind]`. Spare segments (at most
//!   `MAX_SPARES`) are owned, empty, on neither list, and linked through `next` from `spare`.
//! - **H4 purge**: a heap's `purge` queue links the free pages of its segments (and spares)
//!   whose memory has not been returned to the OS yet, oldest first. The queue and its pages'
//!   `purge_pending`, `purge_at` and links are touched only under the queue's lock, by the owner
//!   or by the background purger (`purger.rs`), which returns due pages of live heaps while the
//!   owner is busy elsewhere or idle. The owner takes a free page off the queue, under the lock,
//!   before it takes the page out of its segment, so the purger never purges a page in use.
//! - **H7 live heaps**: `LIVE_HEAPS` links every heap from its start to its abandonment, under
//!   its lock; the purger visits heaps only while holding it (a heap's memory is never unmapped,
//!   and it leaves the list before it goes back to the pool).
//! - **H6 domains**: `domains[d]` is this thread's domain heap for `d`, or the empty domain
//!   heap; bit `d` of `started` is set exactly for the former. `domains[RAW]` is `raw`.
//! - **H5 no self-allocation**: nothing here calls malloc; heaps live in memory from
//!   `thread.rs`'s pools and segments come from `os.rs`.
//!
//! `segments.rs` holds the segment lists, spares, warm pages and the purge schedule (H3, H4).

mod segments;

use crate::alloc::domain_heap::{DomainHeap, PageQueue};
use crate::alloc::huge_cache;
use crate::alloc::page::{DelayedFree, Page, FLAG_IN_FULL};
use crate::alloc::segment::{self, Segment, SegmentKind, WithFree, HEADER_RESERVE, SEGMENT_SIZE};
use crate::alloc::thread;
use crate::platform::list::{Linked, Links, List};
use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::{SpinGuard, SpinLock};
use crate::policy::domain::{Domain, MAX_DOMAINS};
use crate::policy::options;
use crate::purge::pace;
use core::cell::UnsafeCell;
use core::ptr;

/// The heap of a thread that has not allocated yet: every domain's every class points at the
/// empty page.
pub static EMPTY_HEAP: Heap = Heap {
    raw: DomainHeap::empty(),
    state: UnsafeCell::new(HeapState {
        domains: [&raw const EMPTY_HEAP.raw as *mut DomainHeap; MAX_DOMAINS],
        ..HeapState::EMPTY
    }),
    purge: SpinLock::new(Rank::HeapPurge, PurgeQueue(PageQueue::EMPTY)),
    live: UnsafeCell::new(Links::UNLINKED),
};

#[repr(C)]
pub struct Heap {
    /// The raw domain's pages. First, so that the heap's address is the raw domain heap's.
    raw: DomainHeap,
    /// Owner only (H1).
    state: UnsafeCell<HeapState>,
    /// Free pages waiting for the purge delay (H4).
    purge: SpinLock<PurgeQueue>,
    /// Links in `LIVE_HEAPS` (H7).
    live: UnsafeCell<Links<Heap>>,
}

// SAFETY: `state` is reached only by the owning thread (H1), the purge queue under its lock
// (H4), the live links under LIVE_HEAPS's lock (H7); `raw` is Sync itself.
unsafe impl Sync for Heap {}

/// The purge queue, sendable so a lock can hold it: its pages are reached under the lock only.
pub struct PurgeQueue(PageQueue);
// SAFETY: H4: the queue's pages are touched only under the lock that holds it.
unsafe impl Send for PurgeQueue {}

/// Every started heap (H7), for the background purger.
struct LiveHeaps {
    heaps: List<Heap>,
}
// SAFETY: H7: the list is touched under its lock only.
unsafe impl Send for LiveHeaps {}

// SAFETY: `live` is the heap's field for the live-heap list, its only list.
unsafe impl Linked for Heap {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is a valid heap. H7: the links are reached
        // under LIVE_HEAPS's lock only.
        unsafe { UnsafeCell::raw_get(&raw const (*this).live) }
    }
}

static LIVE_HEAPS: SpinLock<LiveHeaps> =
    SpinLock::new(Rank::LiveHeaps, LiveHeaps { heaps: List::EMPTY });

pub struct HeapState {
    /// This thread's domain heaps (H6).
    domains: [*mut DomainHeap; MAX_DOMAINS],
    started: u128,
    segments: List<Segment>,
    with_free: [List<Segment, WithFree>; 2],
    /// Empty segments kept for reuse; at most `MAX_SPARES`.
    spares: List<Segment>,
    spare_count: u32,
    /// When this heap next adopts an abandoned segment on its own (see `tick`).
    next_adoption: u64,
    /// The heap this state belongs to.
    this: *mut Heap,
}

const _: () = assert!(MAX_DOMAINS <= 128, "`started` has a bit per domain");

/// Empty segments a heap keeps instead of unmapping them. Their free pages still go back to
/// the OS on the purge schedule: spares keep address space, not memory, and spare a program
/// that frees and reallocates megabytes at a time the mmap, munmap and page faults of every
/// round. (Four were too few for a program that frees 16 MiB at a time: docs/MEASUREMENTS.md,
/// "Sixteen spare segments".)
const MAX_SPARES: u32 = 16;

impl HeapState {
    const EMPTY: HeapState = HeapState {
        domains: [ptr::null_mut(); MAX_DOMAINS],
        started: 0,
        segments: List::EMPTY,
        with_free: [List::EMPTY; 2],
        spares: List::EMPTY,
        spare_count: 0,
        next_adoption: 0,
        this: ptr::null_mut(),
    };
}

#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP as *const Heap as *mut Heap
}

impl Heap {
    /// Writes the parts of a heap that last as long as its memory: the purge lock, which the
    /// lock registry keeps once it has been taken (SL1). The pool calls this once per heap's
    /// memory; [`Heap::initialize`] writes the rest at each start.
    ///
    /// # Safety
    /// `memory` is fresh pool memory for a heap, valid for writes.
    pub unsafe fn prepare_memory(memory: *mut u8) {
        let heap = memory.cast::<Heap>();
        // SAFETY: the caller gives us the memory.
        unsafe {
            ptr::write(
                &raw mut (*heap).purge,
                SpinLock::new(Rank::HeapPurge, PurgeQueue(PageQueue::EMPTY)),
            )
        };
    }

    /// Writes a fresh heap at `heap` (memory from the pool), with its raw domain heap started.
    ///
    /// # Safety
    /// `heap` must be valid for writes, prepared by [`Heap::prepare_memory`], and not in use.
    pub unsafe fn initialize(heap: *mut Heap) {
        let empty_domain = thread::empty_domain_heap();
        let mut state = HeapState {
            domains: [empty_domain; MAX_DOMAINS],
            ..HeapState::EMPTY
        };
        state.this = heap;
        // SAFETY: the caller gives us the memory.
        unsafe {
            let raw = &raw mut (*heap).raw;
            state.domains[Domain::RAW.id()] = raw;
            state.started = 1 << Domain::RAW.id();
            ptr::write(&raw mut (*heap).state, UnsafeCell::new(state));
            // The purge lock stays as `prepare_memory` wrote it (SL1); only its queue is new.
            (*heap).purge.lock().0 = PageQueue::EMPTY;
            ptr::write(&raw mut (*heap).live, UnsafeCell::new(Links::UNLINKED));
            DomainHeap::initialize(raw, heap, Domain::RAW);
            link_live(heap);
        }
    }

    /// The owner-only state.
    ///
    /// # Safety
    /// Only the owning thread may call this (H1), and it must not hold another reference from
    /// an earlier call.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn state(&self) -> &mut HeapState {
        // SAFETY: H1 as the caller promises.
        unsafe { &mut *self.state.get() }
    }

    /// The domain heap of `heap` for `domain` (the empty one if not started).
    ///
    /// # Safety
    /// `heap` must be the calling thread's heap or the empty heap; `domain < MAX_DOMAINS`.
    #[inline(always)]
    pub unsafe fn domain_heap(heap: *mut Heap, domain: Domain) -> *mut DomainHeap {
        // SAFETY: the caller's contract; `domains` is only written by this thread (H1, H6).
        unsafe { (&(*(*heap).state.get()).domains)[domain] }
    }

    /// Makes `domain_heap` this thread's heap for `domain` (H6).
    ///
    /// # Safety
    /// Owner only; `domain_heap` must be initialised for this heap and `domain`.
    pub unsafe fn install(&self, domain: Domain, domain_heap: *mut DomainHeap) {
        // SAFETY: H1.
        let state = unsafe { self.state() };
        state.domains[domain] = domain_heap;
        state.started |= 1 << domain.id();
    }

    /// Calls `visit` with each started domain heap. `visit` may call back into this heap.
    fn for_each_domain_heap(&self, mut visit: impl FnMut(&DomainHeap)) {
        // SAFETY: H1, H6: started entries are live domain heaps of ours.
        let mut started = unsafe { self.state().started };
        while started != 0 {
            let domain = started.trailing_zeros() as usize;
            started &= started - 1;
            // SAFETY: as above; the borrow of `state` ended before the call.
            unsafe { visit(&*self.state().domains[domain]) };
        }
    }

    /// Slow-path housekeeping: blocks handed over by other threads, idle pages, pending
    /// purges. Purges need the clock, so they run on one slow path in eight (`malloc_slow`
    /// takes the others without calling here).
    pub fn tick(&self) {
        crate::purge::purger::ensure_running();
        self.for_each_domain_heap(DomainHeap::tick);
        let abandoned = segment::abandoned_count() != 0;
        let cached = !huge_cache::is_empty();
        // SAFETY: H1.
        let pending = !self.purge.lock().0.is_empty();
        if !pending && !abandoned && !cached {
            return;
        }
        let now = os::monotonic_millis();
        self.purge_due(now);
        huge_cache::release_expired(now);
        // Exited threads leave their pending purges with their segments; adopting one segment
        // per purge delay makes sure that memory goes back to the OS even when no new thread
        // comes to need it.
        // SAFETY: H1.
        if abandoned && now >= unsafe { self.state().next_adoption } {
            if let Some(segment) = segment::pop_abandoned() {
                self.adopt(segment.as_ptr());
            }
            // SAFETY: H1.
            unsafe { self.state().next_adoption = now + options::purge_delay_millis() };
        }
    }

    /// Takes a free page of `kind` from an owned segment, a spare, an adopted segment, or a
    /// new one, in that order; null when out of memory.
    pub fn take_page(&self, kind: SegmentKind) -> *mut Page {
        // SAFETY: H1.
        let warm = unsafe { self.state().take_warm_page(kind) };
        if !warm.is_null() {
            return warm;
        }
        let list = kind as usize;
        let mut adoptions_left = 4;
        loop {
            // SAFETY: H1; the borrow ends before `adopt`.
            let with_free = unsafe { self.state().with_free.get(list).map(List::first) };
            if let Some(segment) = with_free.filter(|segment| !segment.is_null()) {
                // SAFETY: H3: segments on our lists are ours.
                unsafe {
                    let page = self.state().take_free_page(segment);
                    if !(*segment).has_free_page() {
                        self.state().unlink_with_free(segment);
                    }
                    return page;
                }
            }
            // SAFETY: H1.
            let spare = unsafe { self.state().pop_spare_for(kind) };
            let segment = if !spare.is_null() {
                // SAFETY: H3: spares are ours and empty.
                if unsafe { (*spare).kind } != kind {
                    // SAFETY: H1.
                    unsafe { self.state().decommit_segment(spare, kind) };
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
            // SAFETY: H1.
            unsafe { self.state().link_segment(segment) };
            if kind == SegmentKind::Large {
                // SAFETY: the segment is ours, empty and laid out as large.
                unsafe { return self.state().take_free_page(segment) };
            }
        }
    }

    /// Takes back an empty page that a domain heap of ours took off its lists.
    pub fn return_page(&self, page: *mut Page) {
        // SAFETY: H1/H3: the page and its segment are ours.
        unsafe {
            let state = self.state();
            let segment = segment::segment_of((*page).area);
            (*segment).return_page(&mut *page);
            state.schedule_purge(page);
            if (*segment).used_pages == 0 {
                state.segment_emptied(segment);
            } else {
                state.link_with_free(segment);
            }
        }
    }

    /// Returns the memory of free pages whose delay has passed (all of them if `now` is
    /// `u64::MAX`); true if pages are left waiting. The owner or the purger (H4).
    fn purge_due(&self, now: u64) -> bool {
        let mut queue = self.purge.lock();
        // The lock keeps the owner from taking a page (or releasing its segment) meanwhile.
        // SAFETY: H4: pages on the queue are free pages of the heap's segments.
        unsafe {
            let mut page = queue.0.first();
            while !page.is_null() && (*page).purge_at <= now {
                let next = PageQueue::next(page);
                queue.0.remove(page);
                (*page).purge_pending = false;
                segment::decommit_page(&mut *page);
                // From now on `purge_at` says when the memory went back (0: not known).
                (*page).purge_at = if now == u64::MAX { 0 } else { now };
                page = next;
            }
        }
        !queue.0.is_empty()
    }

    /// Takes over a segment whose thread exited (S1): requeues its pages with our domain heaps
    /// of their domains, frees empty ones, and takes on the purges its free pages were waiting
    /// for. If a domain heap cannot be started (no memory), the segment goes back.
    fn adopt(&self, segment: *mut Segment) {
        // SAFETY: popping it off the abandoned list made us the segment's only user (S1).
        unsafe {
            for index in 0..(*segment).page_count as usize {
                let page = &(*segment).pages[index];
                if page.in_use
                    && thread::start_domain_heap(Domain::from_stored(page.domain)).is_err()
                {
                    segment::push_abandoned(segment);
                    return;
                }
            }
            self.state().link_segment(segment);
            for index in 0..(*segment).page_count as usize {
                let page: *mut Page = &mut (*segment).pages[index];
                if !(*page).in_use {
                    if (*page).purge_pending {
                        self.purge.lock().0.push_back(page);
                    }
                    continue;
                }
                let owner = &*self.state().domains[Domain::from_stored((*page).domain)];
                owner.counters.note_class((*page).size_class());
                (*page).set_flag(FLAG_IN_FULL, false);
                (*page).set_owner_heap(ptr::from_ref(owner).cast_mut().cast());
                (*page).set_delayed_free(DelayedFree::None);
                (*page).collect();
                if (*page).live_blocks() == 0 {
                    let state = self.state();
                    (*segment).return_page(&mut *page);
                    state.schedule_purge(page);
                    state.link_with_free(segment);
                } else if (*page).is_exhausted() && (*page).try_request_delayed_free() {
                    owner.push_full(page);
                } else {
                    owner.queue_push_back((*page).size_class(), page);
                }
            }
            if (*segment).used_pages == 0 {
                self.state().segment_emptied(segment);
            }
        }
    }

    /// Gives back every free page's memory now, frees empty pages, drops the
    /// spares, and adopts abandoned segments to do the same for them.
    pub fn collect(&self) {
        self.for_each_domain_heap(DomainHeap::process_delayed_free);
        while let Some(segment) = segment::pop_abandoned() {
            self.adopt(segment.as_ptr());
        }
        self.for_each_domain_heap(DomainHeap::collect_pages);
        let _ = self.purge_due(u64::MAX);
        // SAFETY: H1.
        unsafe { self.state().release_spares() };
        huge_cache::release_expired(u64::MAX);
    }

    /// The owning thread is exiting: free what is empty, abandon the rest for adoption, and
    /// retire every domain heap, handing the ones other than raw to `give_back`. Purges no
    /// page: a program that starts and ends threads constantly must not pay a purge per page per
    /// thread. (Segments that empty here are decommitted or released as anywhere else.)
    ///
    /// # Safety
    /// Called once, by the exit handler of the owning thread; the heap is unused afterwards.
    pub unsafe fn abandon(&self, mut give_back: impl FnMut(*mut DomainHeap)) {
        // The purger stops visiting this heap before it changes hands (H7).
        unlink_live(self as *const Heap as *mut Heap);
        // No remote free may reach a domain heap once it goes back to the pool (P4). Turning
        // every tag to `Never` waits out remote threads mid-hand-over and stops new hand-overs;
        // the collection below may reset tags to `None`, which is as safe, since only
        // `find_page` (never called from here on) turns a tag to `Use`.
        // SAFETY: H1.
        unsafe {
            self.state()
                .for_each_page(|page| page.set_delayed_free(DelayedFree::Never))
        };
        self.for_each_domain_heap(DomainHeap::process_delayed_free);
        // Collecting also counts what every page handed out, so the retired counters are exact.
        self.for_each_domain_heap(DomainHeap::collect_pages);
        // SAFETY: H1 and the caller's promise.
        unsafe {
            // Pending purges stay with their pages (`purge_pending`, `purge_at`): the adopter
            // queues them again. Only the list links, which are this heap's, are dropped.
            self.purge.lock().0.clear();
            let state = self.state();
            // Spares, empty, go to the abandoned list too: the next thread takes them instead
            // of mapping segments.
            loop {
                let spare = state.pop_spare();
                if spare.is_null() {
                    break;
                }
                segment::push_abandoned(spare);
            }
            while !state.segments.is_empty() {
                let segment = state.segments.first();
                state.unlink_segment(segment);
                // Once its pages have no owner, other threads treat every free into the segment
                // as remote, and the adopter takes it from the list's lock. The aligned flag
                // stays: frees must still find block starts.
                for index in 0..(*segment).page_count as usize {
                    let page = &mut (*segment).pages[index];
                    if page.in_use {
                        // Its queue (this heap's) is dropped whole by `retire`.
                        page.links = Links::UNLINKED;
                        page.set_flag(FLAG_IN_FULL, false);
                        // The adopter's queues decide which page serves (P3).
                        page.set_serving(false);
                        page.set_owner_heap(ptr::null_mut());
                    }
                }
                segment::push_abandoned(segment);
            }
        }
        let raw = &raw const self.raw as *mut DomainHeap;
        self.for_each_domain_heap(|domain_heap| {
            // SAFETY: the thread is exiting (caller) and the pages are gone from its lists.
            unsafe { domain_heap.retire() };
            let pointer = domain_heap as *const DomainHeap as *mut DomainHeap;
            if pointer != raw {
                give_back(pointer);
            }
        });
        // SAFETY: H1.
        let state = unsafe { self.state() };
        state.domains = [thread::empty_domain_heap(); MAX_DOMAINS];
        state.started = 0;
    }
}

/// Frees everything this thread's heap can give back now (see [`Heap::collect`]). A thread
/// without a heap gets one, since adopting abandoned segments needs it.
pub fn collect_current() {
    let mut heap = thread::current_heap();
    if heap == empty_heap() {
        match thread::start_heap() {
            Some(started) => heap = started,
            None => return,
        }
    }
    // SAFETY: H1: our own heap.
    unsafe { (*heap).collect() };
}

fn link_live(heap: *mut Heap) {
    // SAFETY: H7: under the lock; `heap` is a started heap on no list.
    unsafe { LIVE_HEAPS.lock().heaps.push_front(heap) };
}

fn unlink_live(heap: *mut Heap) {
    // SAFETY: H7: under the lock; `heap` is on the list.
    unsafe { LIVE_HEAPS.lock().heaps.remove(heap) };
}

/// The purger's round: returns the due pages of every live heap; true if pages are left
/// waiting in any.
pub fn purge_all_due(now: u64) -> bool {
    let live = LIVE_HEAPS.lock();
    let mut waiting = false;
    let mut heap = live.heaps.first();
    while !heap.is_null() {
        // H4 lets any thread purge under the queue's lock.
        // SAFETY: H7: a heap on the list is live and stays so while we hold the lock.
        unsafe {
            waiting |= (*heap).purge_due(now);
            heap = List::next(heap);
        }
    }
    waiting
}

/// In a child after `fork`, only the forking thread's heap is live: the others' threads do not
/// exist there, and one of them may have held its purge lock at the fork.
pub fn keep_only_live_after_fork(current: *mut Heap) {
    let mut live = LIVE_HEAPS.lock();
    live.heaps = List::EMPTY;
    if current != empty_heap() {
        // SAFETY: H7, under the lock; the forking thread's heap is started, and its old links
        // (to heaps of threads gone in the child) are dropped with the list.
        unsafe {
            *Heap::links(current) = Links::UNLINKED;
            live.heaps.push_front(current);
        }
    }
}
