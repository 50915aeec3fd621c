//! Live accounting: per-heap counters bumped without atomic read-modify-writes, and their merge
//! into a [`Stats`] snapshot on demand.
//!
//! Each thread's pages of one domain (a `DomainHeap`) carry a [`Counters`]: allocations and
//! frees by size class, and what has not yet been published for peaks. Only the owning thread
//! writes them, with plain loads and stores of atomics (no `lock` prefix), so a reader on
//! another thread sees each counter whole, never torn. A snapshot sums the counters of every
//! live heap and those that exited (folded into `RETIRED` at exit); it is not taken at one
//! instant, so a block allocated and freed while it is read may show in one counter and not the
//! other. A thread that frees before it ever allocates gets a heap for its counts, so that no
//! free updates an atomic that threads share.
//!
//! Malloc's fast path adds one to its size class's count of allocations, and `free`'s to its
//! count of frees: every reader sees every operation at once. The count of allocations is kept
//! biased, as the count less the count at which the class's next profile sample is due
//! (`profile/`), so the add that counts an allocation also says, by reaching zero, that the
//! allocation is to be sampled: sampling costs the fast path one branch. With profiling off the
//! next sample is 2^63 allocations away. Readers on other threads add the bias back, under a
//! sequence count that the owner bumps around each change of the bias (A4). (Counting a page's allocations
//! in batches, when its free list ran dry, saved an add; but with the owner's frees going
//! straight back on `free`, a busy page may never run dry, and the batch would wait forever.)
//! Huge blocks are counted at once too.
//!
//! Peaks need a domain-wide total at the moment it peaks. Each heap publishes its net change
//! into its domain's shared total, one atomic add: when the fast path's net change of a class,
//! taken into the drift whenever that class's free list is refilled, has grown by
//! [`PUBLISH_STEP`] (a loop that allocates and frees stays near zero); when its slow-path frees
//! (remote ones) shrink it by as much; when it has given back that many bytes of emptied pages;
//! every 64 housekeeping ticks (512 slow paths or 262,144 frees); and at exit. Publishing sums
//! the fast path's counts over the size classes the heap uses, which is why it is not done on
//! every call. The peak is the highest published total, or the current total when a snapshot
//! finds it higher. So a peak may be low, per thread allocating in the domain, by
//! `PUBLISH_STEP` plus what the fast path did since the last refill of each class; and it may
//! be high by what other threads freed on the fast path since they last published, in pages
//! they still use.
//!
//! Every publish also goes into one total of all domains together, with its own peak and
//! watermark: what a test runner wants ("the most this test held, whatever the family"), and
//! what no sum of the domains' peaks gives. A watermark started again remembers the heaps'
//! unpublished drift at that moment and adds it back when read, so that it measures from what
//! was truly live, not from what had been published.
//!
//! Invariants:
//! - **A1 single writer**: a `Counters` is written by its heap's owner thread only, and by the
//!   exit handler that retires it under `ACTIVE`'s lock; readers only load.
//! - **A2 list**: every started domain heap's counters are on the `ACTIVE` list until retired;
//!   retiring adds them to `RETIRED` and unlinks them under the same lock, so a snapshot (which
//!   holds the lock) counts every heap's counters exactly once.
//! - **A3 no allocation**: nothing here allocates; a snapshot lives on the caller's stack.
//! - **A4 biased allocations**: in a heap's `Counters`, `class_allocations[c]` holds the
//!   count of allocations less `sample_due[c]` (wrapping), and only the owner changes
//!   `sample_due`, between two increments of `rearms` (odd while it writes); a reader that
//!   sees `rearms` even and unchanged around its loads of both saw a true count.

pub(crate) mod exit_report;
pub(crate) mod identity;
pub(crate) mod report;
mod snapshot;
pub(crate) mod timeline;

pub use identity::CommandLine;
use snapshot::Sums;
pub use snapshot::{
    snapshot, DomainStats, Figures, HugeStats, ProcessStats, SizeClassStats, Stats,
};

use crate::alloc::size_class::{SizeClass, CLASS_COUNT};
use crate::platform::list::{Linked, Links, List};
use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use crate::policy::domain::{Domain, MAX_DOMAINS};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// The drift of a heap's net usable bytes that makes it publish to its domain's total. At 64 KiB,
/// random sizes up to 32 KiB (glibc-thread) drifted past it on a third of the slow paths.
pub const PUBLISH_STEP: i64 = 256 * 1024;

/// `sample_due` while no sample is: 2^63 allocations away, so the biased count never reaches
/// zero.
pub const NEVER_DUE: u64 = 1 << 63;

/// Version of the stats JSON schema (`docs/stats-schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// Whether this build counts (the `stats` feature; off only to measure what counting costs).
pub const ENABLED: bool = cfg!(feature = "stats");

const _: () = assert!(
    CLASS_COUNT <= 64,
    "`Unpublished::classes` has a bit per class"
);

/// One heap's counters for one domain (A1). Aligned to its own cache lines: the owner writes
/// them on every free, and a line shared with fields other threads write (a heap's
/// delayed-free list) would bounce between cores.
#[repr(C, align(128))]
pub struct Counters {
    /// Owner only: no other thread reads it, so it needs no atomics.
    unpublished: UnsafeCell<Unpublished>,
    tallies: Tallies,
    /// The count of allocations of each class at which its next sample is due (A4).
    sample_due: [AtomicU64; CLASS_COUNT],
    /// Odd while the owner changes `sample_due` (A4).
    rearms: AtomicU64,
    domain: AtomicUsize,
    /// Links in the `ACTIVE` list (A2), under its lock.
    links: UnsafeCell<Links<Counters>>,
}

// SAFETY: `links` is the counters' field for the active list, their only list.
unsafe impl Linked for Counters {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is valid. A2: reached under ACTIVE's lock.
        unsafe { UnsafeCell::raw_get(&raw const (*this).links) }
    }
}

/// What a heap has not yet added to its domain's shared total (for peaks; module comment).
struct Unpublished {
    /// Usable bytes allocated less usable bytes freed since the last publication, but for what
    /// the fast paths did since the class was last settled: that is in the tallies only.
    drift: i64,
    /// `class_allocations` and `class_frees` when the class was last settled or published: the
    /// differences are what the fast paths did since.
    published_allocations: [u64; CLASS_COUNT],
    published_frees: [u64; CLASS_COUNT],
    /// A bit per size class this heap has served pages of (never cleared): the classes whose
    /// fast-path frees a publication sums.
    classes: u64,
    /// Bytes of the pages given back since the last publication: their blocks were freed, so
    /// once they add up to a publication step, publishing is worth its sum over the classes.
    emptied_bytes: usize,
    /// Housekeeping ticks until the next publication (see [`Counters::tick`]).
    ticks_until_publish: u32,
}

/// A heap publishes at least once per this many of its thread's housekeeping ticks (one per
/// eight slow paths or 4096 of the owner's frees), so the fast paths' counts reach the shared
/// total within 512 slow paths or 262,144 frees of a busy thread. More often costs a workload
/// that frees pages in batches for publications nobody needs (docs/MEASUREMENTS.md).
const TICKS_PER_PUBLISH: u32 = 64;

/// What a heap counts, and what the retired totals keep of exited heaps: allocations and frees
/// by class (two arrays rather than pairs, so indexing by the class needs no shift on the fast
/// path), and huge blocks.
struct Tallies {
    class_allocations: [AtomicU64; CLASS_COUNT],
    class_frees: [AtomicU64; CLASS_COUNT],
    huge_allocations: AtomicU64,
    huge_frees: AtomicU64,
    huge_allocated_bytes: AtomicU64,
    huge_freed_bytes: AtomicU64,
}

impl Tallies {
    const fn new() -> Tallies {
        Tallies::biased::<0>()
    }

    /// Tallies whose counts of allocations start at `BIAS` (A4).
    const fn biased<const BIAS: u64>() -> Tallies {
        Tallies {
            class_allocations: [const { AtomicU64::new(BIAS) }; CLASS_COUNT],
            class_frees: [const { AtomicU64::new(0) }; CLASS_COUNT],
            huge_allocations: AtomicU64::new(0),
            huge_frees: AtomicU64::new(0),
            huge_allocated_bytes: AtomicU64::new(0),
            huge_freed_bytes: AtomicU64::new(0),
        }
    }

    /// Every counter, paired with its twin in `other`, in one fixed order.
    fn zip<'a>(
        &'a self,
        other: &'a Tallies,
    ) -> impl Iterator<Item = (&'a AtomicU64, &'a AtomicU64)> {
        let singles = |t: &'a Tallies| {
            [
                &t.huge_allocations,
                &t.huge_frees,
                &t.huge_allocated_bytes,
                &t.huge_freed_bytes,
            ]
        };
        let all = |t: &'a Tallies| {
            t.class_allocations
                .iter()
                .chain(t.class_frees.iter())
                .chain(singles(t))
        };
        all(self).zip(all(other))
    }

    /// Adds every counter of `self` into `into` (atomically: `into` is shared), the counts of
    /// allocations less `bias` (A4).
    fn fold_into(&self, into: &Tallies, bias: &[u64; CLASS_COUNT]) {
        for (from, to) in self.zip(into) {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        for (class, &bias) in bias.iter().enumerate() {
            into.class_allocations[class].fetch_add(bias, Ordering::Relaxed);
        }
    }

    /// Adds every counter of `self` to the plain sums of a snapshot, the counts of allocations
    /// less `bias` (A4).
    fn add_to(&self, sums: &mut Sums, bias: &[u64; CLASS_COUNT]) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        for (class, bias) in bias.iter().enumerate() {
            sums.class_allocations[class] +=
                load(&self.class_allocations[class]).wrapping_add(*bias);
            sums.class_frees[class] += load(&self.class_frees[class]);
        }
        sums.huge_allocations += load(&self.huge_allocations);
        sums.huge_frees += load(&self.huge_frees);
        sums.huge_allocated_bytes += load(&self.huge_allocated_bytes);
        sums.huge_freed_bytes += load(&self.huge_freed_bytes);
    }
}

// The links are touched under ACTIVE's lock (A2).
// SAFETY: the atomics are shared by design and `unpublished` is owner-only (A1).
unsafe impl Sync for Counters {}

/// Owner-only increment: a load and a store, which a reader can never see half done.
#[inline(always)]
fn bump(counter: &AtomicU64, amount: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(amount),
        Ordering::Relaxed,
    );
}

impl Counters {
    pub const fn new() -> Counters {
        Counters {
            unpublished: UnsafeCell::new(Unpublished {
                drift: 0,
                published_allocations: [0; CLASS_COUNT],
                published_frees: [0; CLASS_COUNT],
                classes: 0,
                emptied_bytes: 0,
                ticks_until_publish: TICKS_PER_PUBLISH,
            }),
            // A4: a count of 0 less NEVER_DUE, which is NEVER_DUE.
            tallies: Tallies::biased::<NEVER_DUE>(),
            sample_due: [const { AtomicU64::new(NEVER_DUE) }; CLASS_COUNT],
            rearms: AtomicU64::new(0),
            domain: AtomicUsize::new(0),
            links: UnsafeCell::new(Links::UNLINKED),
        }
    }

    /// Where `class_allocations` lies in a `Counters`, for callers that count an allocation
    /// with one instruction relative to a pointer they hold (`DomainHeap::count_allocation`).
    pub const ALLOCATION_COUNTS_OFFSET: usize = core::mem::offset_of!(Counters, tallies)
        + core::mem::offset_of!(Tallies, class_allocations);

    /// Malloc handed out a block of `class`: one add, which every reader sees at once. Its
    /// bytes reach the domain's shared total when the class is settled or published. True when
    /// the allocation is the one the class's next profile sample is due at (A4): the caller
    /// samples it and calls [`Self::rearm`]. (The malloc paths do this add in one instruction
    /// of their own, relative to the domain heap: see `DomainHeap::count_allocation`.)
    ///
    /// # Safety
    /// Owner thread only (A1).
    #[inline(always)]
    pub unsafe fn count_allocation(&self, class: SizeClass) -> bool {
        if !ENABLED {
            return false;
        }
        let counter = &self.tallies.class_allocations[class];
        let biased = counter.load(Ordering::Relaxed).wrapping_add(1);
        counter.store(biased, Ordering::Relaxed);
        biased == 0
    }

    /// Makes `class`'s next sample due `gap` allocations from now: at least one, and at most
    /// 2^62, which no program reaches, so that is how a caller says "never".
    ///
    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn rearm(&self, class: SizeClass, gap: u64) {
        if !ENABLED {
            return;
        }
        let gap = gap.clamp(1, 1 << 62);
        let allocations = self.allocations(class);
        // A4: readers retry while `rearms` is odd or has moved.
        let rearms = self.rearms.load(Ordering::Relaxed);
        self.rearms.store(rearms + 1, Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        let due = allocations.wrapping_add(gap);
        self.sample_due[class].store(due, Ordering::Relaxed);
        self.tallies.class_allocations[class].store(gap.wrapping_neg(), Ordering::Relaxed);
        self.rearms.store(rearms + 2, Ordering::Release);
    }

    /// Adds the counters to the plain sums of a snapshot (any thread, A4).
    fn add_to(&self, sums: &mut Sums) {
        *sums = self.with_biases(|biases| {
            let mut read = *sums;
            self.tallies.add_to(&mut read, biases);
            read
        });
    }

    /// Each class's `sample_due`, the bias of its count of allocations (A4).
    fn biases(&self) -> [u64; CLASS_COUNT] {
        core::array::from_fn(|c| self.sample_due[c].load(Ordering::Relaxed))
    }

    /// The allocations of `class` so far (owner thread only: others use [`Self::with_biases`]).
    fn allocations(&self, class: SizeClass) -> u64 {
        let biased = self.tallies.class_allocations[class].load(Ordering::Relaxed);
        biased.wrapping_add(self.sample_due[class].load(Ordering::Relaxed))
    }

    /// The biases to add to the counts of allocations read right after (A4); from any thread.
    /// `read` does those reads, and is repeated if the owner changed a bias meanwhile.
    fn with_biases<R>(&self, mut read: impl FnMut(&[u64; CLASS_COUNT]) -> R) -> R {
        loop {
            let before = self.rearms.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let result = read(&self.biases());
                core::sync::atomic::fence(Ordering::Acquire);
                if self.rearms.load(Ordering::Relaxed) == before {
                    return result;
                }
            }
            core::hint::spin_loop();
        }
    }

    /// Takes what the fast paths did in `class` since it was last settled into the drift, and
    /// publishes if that grew by a step. Constant time (one class), on the slow path that
    /// refills the class, so a loop that allocates and frees leaves the drift near zero and
    /// never pays for a publication.
    ///
    /// # Safety
    /// As [`Self::count_allocation`].
    #[inline]
    pub unsafe fn settle_class(&self, class: SizeClass) {
        if !ENABLED {
            return;
        }
        // We are the only writer of `unpublished` (A1).
        // SAFETY: the caller's contract: owner thread only (A1).
        unsafe {
            let unpublished = &mut *self.unpublished.get();
            let net_blocks = self.take_unsettled(unpublished, class);
            unpublished.drift += net_blocks * class.size() as i64;
            // Only growth can raise the peak; shrinking publishes on the other occasions.
            if unpublished.drift > PUBLISH_STEP {
                self.publish();
            }
        }
    }

    /// The blocks of `class` the fast paths allocated less those they freed since the class
    /// was last settled, which starts the count anew.
    #[inline(always)]
    fn take_unsettled(&self, unpublished: &mut Unpublished, class: SizeClass) -> i64 {
        let (allocations, frees) = (
            self.allocations(class),
            self.tallies.class_frees[class].load(Ordering::Relaxed),
        );
        let allocated = &mut unpublished.published_allocations[class];
        let net = allocations.wrapping_sub(*allocated) as i64;
        *allocated = allocations;
        let freed = &mut unpublished.published_frees[class];
        let net = net - frees.wrapping_sub(*freed) as i64;
        *freed = frees;
        net
    }

    /// The heap starts serving a page of `class` (fresh or adopted): its fast-path frees are to
    /// be published.
    ///
    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn note_class(&self, class: SizeClass) {
        // SAFETY: the caller's contract.
        unsafe { (*self.unpublished.get()).classes |= 1 << class.index() };
    }

    /// `free`'s fast path freed a block of `class`: one add, which every reader sees at once.
    /// Its bytes reach the domain's shared total when the class is settled or published.
    ///
    /// # Safety
    /// As [`Self::count_allocation`].
    #[inline(always)]
    pub unsafe fn count_fast_free(&self, class: SizeClass) {
        if !ENABLED {
            return;
        }
        // SAFETY: the caller's contract.
        bump(&self.tallies.class_frees[class], 1);
    }

    /// A slow path freed a block of `class` (`block_size` usable bytes): counted at once in
    /// the drift too, and published if it is due. Remote frees come this way, so a thread that
    /// only frees other threads' blocks still publishes.
    ///
    /// # Safety
    /// As [`Self::count_allocation`].
    pub unsafe fn count_free(&self, class: SizeClass, block_size: usize) {
        if !ENABLED {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe {
            bump(&self.tallies.class_frees[class], 1);
            let unpublished = &mut *self.unpublished.get();
            unpublished.published_frees[class] += 1;
            unpublished.drift -= block_size as i64;
            self.publish_if_drifted();
        }
    }

    /// The heap gave back a page of `bytes` whose blocks were all freed: a cheap sign that the
    /// fast path freed that much, which publishes once it adds up to a step. Without it, a
    /// thread that frees much and then rests would leave its domain's total high, and another
    /// thread's growth would raise a peak that never was.
    ///
    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn count_emptied_page(&self, bytes: usize) {
        if !ENABLED {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe {
            let unpublished = &mut *self.unpublished.get();
            unpublished.emptied_bytes += bytes;
            if unpublished.emptied_bytes >= PUBLISH_STEP as usize {
                self.publish();
            }
        }
    }

    /// One of the thread's housekeeping ticks: publishes every [`TICKS_PER_PUBLISH`]th time,
    /// so that the fast path's frees reach the shared total even while nothing else is due.
    ///
    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn tick(&self) {
        if !ENABLED {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe {
            let unpublished = &mut *self.unpublished.get();
            unpublished.ticks_until_publish -= 1;
            if unpublished.ticks_until_publish == 0 {
                unpublished.ticks_until_publish = TICKS_PER_PUBLISH;
                self.publish();
            }
        }
    }

    /// Publishes if the drift passed [`PUBLISH_STEP`] (slow paths call this).
    ///
    /// # Safety
    /// Owner thread only (A1).
    unsafe fn publish_if_drifted(&self) {
        // SAFETY: the caller's contract.
        if ENABLED && unsafe { (*self.unpublished.get()).drift }.abs() > PUBLISH_STEP {
            // SAFETY: as above.
            unsafe { self.publish() };
        }
    }

    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn count_huge_allocation(&self, usable: usize) {
        if !ENABLED {
            return;
        }
        bump(&self.tallies.huge_allocations, 1);
        bump(&self.tallies.huge_allocated_bytes, usable as u64);
        // SAFETY: the caller's contract.
        unsafe {
            (*self.unpublished.get()).drift += usable as i64;
            self.publish();
        }
    }

    /// # Safety
    /// Owner thread only (A1).
    pub unsafe fn count_huge_free(&self, usable: usize) {
        if !ENABLED {
            return;
        }
        bump(&self.tallies.huge_frees, 1);
        bump(&self.tallies.huge_freed_bytes, usable as u64);
        // SAFETY: the caller's contract.
        unsafe {
            (*self.unpublished.get()).drift -= usable as i64;
            self.publish();
        }
    }

    /// Adds this heap's drift, and what the fast paths did since each class was last settled,
    /// to its domain's total, and raises the domain's peak if passed.
    ///
    /// # Safety
    /// Owner thread only (A1).
    #[cold]
    #[inline(never)]
    unsafe fn publish(&self) {
        // SAFETY: the caller's contract.
        let unpublished = unsafe { &mut *self.unpublished.get() };
        let mut net = core::mem::take(&mut unpublished.drift);
        unpublished.emptied_bytes = 0;
        let mut classes = unpublished.classes;
        // With no bit left, trailing_zeros is 64: no class (CLASS_COUNT <= 64), and the loop ends.
        while let Some(class) = SizeClass::from_index(classes.trailing_zeros() as usize) {
            classes &= classes - 1;
            let net_blocks = self.take_unsettled(unpublished, class);
            net += net_blocks * class.size() as i64;
        }
        add_published(self.domain.load(Ordering::Relaxed), net);
    }
}

/// What every domain shares across threads.
struct DomainShared {
    /// The sum of what every heap published (see the module comment).
    published_live: AtomicI64,
    peak: AtomicI64,
    peak_time_ms: AtomicU64,
    /// The highest `published_live` since [`reset_watermark`]: a peak a caller can start again
    /// (a test runner's "the most this test held") without touching the process's own.
    watermark: AtomicI64,
    /// What was live less what was published when the watermark was reset: the heaps'
    /// unpublished drift then, added back when the watermark is read, so that a part of a run is
    /// measured from what was truly live at its start (idle threads' drift would otherwise make
    /// every part's top look low by as much).
    watermark_offset: AtomicI64,
}

impl DomainShared {
    const fn new() -> DomainShared {
        DomainShared {
            published_live: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            peak_time_ms: AtomicU64::new(0),
            watermark: AtomicI64::new(0),
            watermark_offset: AtomicI64::new(0),
        }
    }

    /// Adds `net` to the total, and raises the peaks if it grew.
    fn add(&self, net: i64) {
        let total = self.published_live.fetch_add(net, Ordering::Relaxed) + net;
        if net > 0 {
            self.watermark.fetch_max(total, Ordering::Relaxed);
            self.raise_peak(total);
        }
    }

    /// A snapshot found `live` bytes live: the peaks are at least that.
    fn saw_live(&self, live: i64) {
        let offset = self.watermark_offset.load(Ordering::Relaxed);
        self.watermark.fetch_max(live - offset, Ordering::Relaxed);
        self.raise_peak(live);
    }

    fn raise_peak(&self, total: i64) {
        let mut peak = self.peak.load(Ordering::Relaxed);
        while total > peak {
            match self
                .peak
                .compare_exchange_weak(peak, total, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak_time_ms.store(uptime_millis(), Ordering::Relaxed);
                    return;
                }
                Err(current) => peak = current,
            }
        }
    }

    /// Starts the watermark again from `live`, what a snapshot just found live.
    fn reset_watermark(&self, live: i64) {
        let published = self.published_live.load(Ordering::Relaxed);
        self.watermark_offset
            .store(live - published, Ordering::Relaxed);
        self.watermark.store(published, Ordering::Relaxed);
    }

    /// The most held since the watermark was reset, in live bytes.
    fn watermark(&self) -> u64 {
        let top =
            self.watermark.load(Ordering::Relaxed) + self.watermark_offset.load(Ordering::Relaxed);
        top.max(0) as u64
    }
}

static SHARED: [DomainShared; MAX_DOMAINS] = [const { DomainShared::new() }; MAX_DOMAINS];
/// Every domain's together: the process's peak of live blocks whatever their domain, which no
/// sum of the domains' own peaks gives (they peak at different times).
static ALL_DOMAINS: DomainShared = DomainShared::new();

/// A heap's (or an orphan operation's) net change of the live bytes of domain `id` (below
/// `MAX_DOMAINS`), into the domain's total and every domain's.
fn add_published(id: usize, net: i64) {
    SHARED[id].add(net);
    ALL_DOMAINS.add(net);
}

/// What a watermark is kept for: one domain, or all of them together (a test's "the most it
/// held", whatever the family it allocated through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domains {
    One(Domain),
    All,
}

impl From<Domain> for Domains {
    fn from(domain: Domain) -> Domains {
        Domains::One(domain)
    }
}

impl Domains {
    fn shared(self) -> &'static DomainShared {
        match self {
            Domains::One(domain) => &SHARED[domain],
            Domains::All => &ALL_DOMAINS,
        }
    }
}

/// Starts `scope`'s watermark again from its live bytes now; its peak stays. Takes a snapshot
/// (so it waits, as one does, for threads starting or exiting).
pub fn reset_watermark(scope: Domains) {
    let stats = snapshot();
    let live = match scope {
        Domains::One(domain) => stats.domain(domain).live_usable_bytes,
        Domains::All => stats.all_domains().live_usable_bytes,
    };
    scope.shared().reset_watermark(live as i64);
}

/// The most `scope` has held since its watermark was last reset (since the process started if
/// never), with the same precision as its peak.
pub fn watermark(scope: Domains) -> u64 {
    // The snapshot raises the watermark to what is live now, as it does the peak.
    let _ = snapshot();
    scope.shared().watermark()
}

/// Tallies of heaps that exited, and of the operations of threads with no heap in the block's
/// domain (added atomically: both are rare).
static RETIRED: [Tallies; MAX_DOMAINS] = [const { Tallies::new() }; MAX_DOMAINS];

/// A free of a `domain` block by a thread that has no heap in that domain.
pub fn count_orphan_free(domain: Domain, class: SizeClass, block_size: usize) {
    if !ENABLED {
        return;
    }
    RETIRED[domain].class_frees[class].fetch_add(1, Ordering::Relaxed);
    add_published(domain.id(), -(block_size as i64));
}

/// A huge block allocated by a thread that has no heap in its domain.
pub fn count_orphan_huge_allocation(domain: Domain, usable: usize) {
    if !ENABLED {
        return;
    }
    let retired = &RETIRED[domain];
    retired.huge_allocations.fetch_add(1, Ordering::Relaxed);
    retired
        .huge_allocated_bytes
        .fetch_add(usable as u64, Ordering::Relaxed);
    add_published(domain.id(), usable as i64);
}

/// As [`count_orphan_free`], for a huge block.
pub fn count_orphan_huge_free(domain: Domain, usable: usize) {
    if !ENABLED {
        return;
    }
    RETIRED[domain].huge_frees.fetch_add(1, Ordering::Relaxed);
    RETIRED[domain]
        .huge_freed_bytes
        .fetch_add(usable as u64, Ordering::Relaxed);
    add_published(domain.id(), -(usable as i64));
}

struct ActiveList {
    counters: List<Counters>,
}
// SAFETY: the list is touched only under its lock (A2).
unsafe impl Send for ActiveList {}

static ACTIVE: SpinLock<ActiveList> = SpinLock::new(
    Rank::StatsCounters,
    ActiveList {
        counters: List::EMPTY,
    },
);

/// Puts fresh counters for `domain` on the active list.
///
/// # Safety
/// `counters` must stay valid until [`retire`] is called on it.
pub unsafe fn activate(counters: *const Counters, domain: Domain) {
    let mut list = ACTIVE.lock();
    // SAFETY: A2: the links are ours under the lock; the caller keeps the counters alive.
    unsafe {
        ptr::write(counters.cast_mut(), Counters::new());
        (*counters).domain.store(domain.id(), Ordering::Relaxed);
        list.counters.push_front(counters.cast_mut());
    }
}

/// Folds a heap's counters into `RETIRED` and takes them off the active list (A2).
///
/// # Safety
/// `counters` must be on the active list, and its heap's thread must be the caller.
pub unsafe fn retire(counters: *const Counters) {
    let mut list = ACTIVE.lock();
    // SAFETY: A1/A2: the caller owns the heap and we hold the list's lock.
    unsafe {
        let counters = &*counters;
        let domain = counters.domain.load(Ordering::Relaxed);
        counters
            .tallies
            .fold_into(&RETIRED[domain], &counters.biases());
        if ENABLED {
            counters.publish();
        }
        list.counters.remove(ptr::from_ref(counters).cast_mut());
    }
}

static START_MILLIS: AtomicU64 = AtomicU64::new(0);
static THREADS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Sets time zero for the stats' clock (process set-up).
pub fn start_clock() {
    let _ = START_MILLIS.compare_exchange(
        0,
        os::monotonic_millis().max(1),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// Milliseconds since the allocator started in this process.
pub fn uptime_millis() -> u64 {
    let start = START_MILLIS.load(Ordering::Relaxed);
    if start == 0 {
        return 0;
    }
    os::monotonic_millis().saturating_sub(start)
}

pub fn note_thread_started() {
    THREADS_SEEN.fetch_add(1, Ordering::Relaxed);
}
