//! Segments: 4 MiB regions aligned to their size, split into pages of one size.
//!
//! Because a segment is aligned to its size, the segment holding any block is found by masking
//! the block's address ([`segment_of`]), and the page by shifting the offset ([`Segment::page_of`]).
//! The header (this struct and its page table) sits at the segment's start; the first
//! [`HEADER_RESERVE`] bytes are never handed out, so every page area starts 64 KiB aligned.
//!
//! Kinds: small segments have 64 pages of 64 KiB (page 0 is the header), medium ones 8 pages
//! of 512 KiB, large ones a single page, and huge ones (see `huge.rs`) a single block of any
//! size in a mapping of its own, which may be longer than `SEGMENT_SIZE`.
//!
//! Invariants:
//! - **S1 owner**: a segment belongs to one heap (it is on that heap's `segments` list and
//!   its in-use pages carry that heap as `Page::owner`), to the abandoned list (its pages'
//!   owner is 0), or, when huge, to whoever holds its block. Only the owning thread changes
//!   the page table and the owner-only fields; a thread adopting an abandoned segment takes it
//!   off the abandoned list under its lock, which makes it the sole writer.
//! - **S2 layout**: `kind`, `page_shift`, `page_count` and `mapping_size` change only while no
//!   block of the segment is allocated, so any thread freeing a block reads them safely.
//! - **S3 registry**: a segment is in the registry from creation until just before its memory
//!   goes back to the OS.
//! - **S4 counts**: `used_pages` is the number of pages in use; `free_pages` has a bit for
//!   every page that can be taken. A segment with `used_pages == 0` holds no live block.
//! - **S5 committed**: a page counts in `os::committed_bytes` exactly while it is in use or
//!   free with `memory_is_zero` false; every change of those two goes through this module.

use crate::alloc::page::Page;
use crate::alloc::registry;
use crate::platform::list::{Linked, Links, List};
use crate::platform::lock_registry::Rank;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

pub const SEGMENT_SHIFT: u32 = 22;
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
const _: () = assert!(
    SEGMENT_SHIFT == registry::SLOT_SHIFT,
    "a registry slot is one segment"
);
const _: () = assert!(
    crate::alloc::size_class::MAX_REQUEST == isize::MAX as usize - 2 * SEGMENT_SIZE,
    "a request's upper bound leaves two segments of room"
);
pub const SEGMENT_MASK: usize = SEGMENT_SIZE - 1;

/// Bytes at the start of every segment kept for its header.
pub const HEADER_RESERVE: usize = 64 * 1024;

pub const MAX_PAGES: usize = 64;

/// Largest block served by small (64 KiB) pages: at least 8 blocks a page.
pub const SMALL_BLOCK_MAX: usize = 8 * 1024;
/// Largest block served by medium (512 KiB) pages: at least 7 blocks a page.
pub const MEDIUM_BLOCK_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum SegmentKind {
    Small = 0,
    Medium = 1,
    Large = 2,
    Huge = 3,
}

impl SegmentKind {
    /// The kind of page that serves blocks of `block_size` bytes (at most `LARGE_MAX`).
    pub fn for_block_size(block_size: usize) -> SegmentKind {
        if block_size <= SMALL_BLOCK_MAX {
            SegmentKind::Small
        } else if block_size <= MEDIUM_BLOCK_MAX {
            SegmentKind::Medium
        } else {
            SegmentKind::Large
        }
    }

    fn page_shift(self) -> u32 {
        match self {
            SegmentKind::Small => 16,
            SegmentKind::Medium => 19,
            SegmentKind::Large | SegmentKind::Huge => SEGMENT_SHIFT,
        }
    }
}

#[repr(C)]
pub struct Segment {
    /// First, so that a page's fields sit at segment + index * 128 + field offset.
    pub pages: [Page; MAX_PAGES],
    // Layout: any thread may read while it holds a block of the segment (S2).
    pub page_shift: u32,
    pub page_count: u32,
    pub kind: SegmentKind,
    pub mapping_size: usize,
    // Owner only (S1).
    pub used_pages: u32,
    pub free_pages: u64,
    /// Links in the owner heap's list of segments or of its spares, or in the abandoned list.
    pub links: Links<Segment>,
    /// Links in the owner heap's list of segments of this kind with a free page.
    pub with_free: Links<Segment>,
    pub in_with_free_list: bool,
    /// Whether the mapping asks for transparent huge pages (`lay_out`).
    huge_pages_advised: bool,
}

/// The tag of the lists of segments with a free page (a segment is on one of those and on
/// its heap's list of segments at once).
pub enum WithFree {}

// SAFETY: `links` is the segment's field for the heap's segments, its spares or the
// abandoned list, one at a time.
unsafe impl Linked for Segment {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is a valid segment.
        unsafe { &raw mut (*this).links }
    }
}

// SAFETY: `with_free` is the segment's field for the lists of segments with a free page.
unsafe impl Linked<WithFree> for Segment {
    unsafe fn links(this: *mut Self) -> *mut Links<Self> {
        // SAFETY: the caller's contract: `this` is a valid segment.
        unsafe { &raw mut (*this).with_free }
    }
}

const _: () = assert!(core::mem::size_of::<Segment>() <= HEADER_RESERVE);
const _: () = assert!(MAX_PAGES << 16 == SEGMENT_SIZE);
const _: () = assert!(core::mem::offset_of!(Segment, pages) == 0);

/// The segment that holds `address`, by masking.
#[inline(always)]
pub fn segment_of(address: *const u8) -> *mut Segment {
    (address as usize & !SEGMENT_MASK) as *mut Segment
}

impl Segment {
    /// The page that holds `address`, which must lie in this segment's first `SEGMENT_SIZE`.
    #[inline(always)]
    pub fn page_of(&self, address: *const u8) -> *mut Page {
        let index = (address as usize & SEGMENT_MASK) >> self.page_shift;
        debug_assert!(index < self.page_count as usize);
        // The table is at offset 0, so a page's fields are addressed as segment + index * 128 +
        // field, with no extra add.
        // SAFETY: S2: `page_shift` maps the segment's first SEGMENT_SIZE below MAX_PAGES.
        unsafe { (self as *const Segment as *mut Page).add(index) }
    }

    /// Maps a fresh segment of `kind` (not huge) for the calling thread's heap.
    pub fn create(kind: SegmentKind) -> Option<NonNull<Segment>> {
        debug_assert!(kind != SegmentKind::Huge);
        let start = os::reserve_aligned(SEGMENT_SIZE, SEGMENT_SIZE)?;
        // SAFETY: the mapping is fresh, zeroed, writable and SEGMENT_SIZE long.
        let segment = unsafe { Self::start_in(start, kind, SEGMENT_SIZE) }?;
        if crate::policy::secure::active() {
            // The guard page (secure.rs): `lay_out` leaves it out of every page.
            let guard = os::page_size();
            // SAFETY: the last page of our fresh mapping, which no page's area covers.
            unsafe {
                let last = NonNull::new_unchecked(start.as_ptr().add(SEGMENT_SIZE - guard));
                os::guard(last, guard);
            }
        }
        SEGMENTS.fetch_add(1, Ordering::Relaxed);
        Some(segment)
    }

    /// Writes a segment header at the start of a fresh mapping of `mapping_size` bytes, lays
    /// it out and registers it (S3). On failure the mapping is released.
    ///
    /// # Safety
    /// `start` must be a fresh, zeroed, `SEGMENT_SIZE`-aligned mapping of `mapping_size` bytes
    /// from `os::reserve_aligned`, known to nobody else.
    pub unsafe fn start_in(
        start: NonNull<u8>,
        kind: SegmentKind,
        mapping_size: usize,
    ) -> Option<NonNull<Segment>> {
        // SAFETY: the caller's contract.
        let segment = unsafe { Segment::write_header(start, kind, mapping_size) };
        if !registry::register(start.as_ptr() as usize) {
            // SAFETY: nothing refers to the mapping yet.
            unsafe { os::release(start, mapping_size) };
            return None;
        }
        Some(segment)
    }

    /// Writes a fresh segment header of `kind` at `start` and lays it out, without registering
    /// it: for [`Segment::start_in`], and for a huge mapping split off another to be cached.
    ///
    /// # Safety
    /// `start` must be a `SEGMENT_SIZE`-aligned mapping of `mapping_size` bytes that holds no
    /// live block and that nobody else uses.
    pub unsafe fn write_header(
        start: NonNull<u8>,
        kind: SegmentKind,
        mapping_size: usize,
    ) -> NonNull<Segment> {
        let segment = start.cast::<Segment>();
        // SAFETY: the caller gives us the mapping, which is large enough for the header.
        unsafe {
            ptr::write(
                segment.as_ptr(),
                Segment {
                    pages: [const { Page::empty() }; MAX_PAGES],
                    page_shift: 0,
                    page_count: 0,
                    kind,
                    mapping_size,
                    used_pages: 0,
                    free_pages: 0,
                    links: Links::UNLINKED,
                    with_free: Links::UNLINKED,
                    in_with_free_list: false,
                    huge_pages_advised: false,
                },
            );
            (*segment.as_ptr()).lay_out(kind, true);
        }
        segment
    }

    /// Splits an empty segment into pages of `kind` (S2: no block may be live).
    pub fn lay_out(&mut self, kind: SegmentKind, memory_is_zero: bool) {
        debug_assert!(self.used_pages == 0);
        os::note_committed(-(self.committed_in_free_pages() as isize));
        let shift = kind.page_shift();
        let count = (SEGMENT_SIZE >> shift) as u32;
        self.kind = kind;
        self.advise_huge_pages();
        self.page_shift = shift;
        self.page_count = count;
        self.free_pages = 0;
        let segment_start = self as *mut Segment as usize;
        // Secure mode keeps the segment's last OS page as a guard (secure.rs).
        let guard = if crate::policy::secure::active() && kind != SegmentKind::Huge {
            os::page_size()
        } else {
            0
        };
        for index in 0..count as usize {
            let start = (index << shift).max(HEADER_RESERVE);
            let end = ((index + 1) << shift).min(SEGMENT_SIZE - guard);
            let page = &mut self.pages[index];
            *page = Page::empty();
            page.index = index as u8;
            page.area = (segment_start + start) as *mut u8;
            page.area_size = end.saturating_sub(start);
            page.memory_is_zero = memory_is_zero;
            if page.area_size > 0 {
                self.free_pages |= 1 << index;
            }
        }
        os::note_committed(self.committed_in_free_pages() as isize);
    }

    /// With `TALLYMALLOC_HUGE_PAGES=1`, medium and large segments ask for transparent huge
    /// pages: their blocks are copied and filled in bulk, which 2 MiB pages make cheaper
    /// (fewer faults and TLB misses). Small segments do not, nor does anything by default:
    /// every thread's medium segment would be charged 2 MiB pages (docs/MEASUREMENTS.md,
    /// "Transparent huge pages for segments"). A spare laid out as another kind changes its
    /// advice with it.
    fn advise_huge_pages(&mut self) {
        let wanted = matches!(self.kind, SegmentKind::Medium | SegmentKind::Large)
            && crate::policy::options::huge_pages();
        if wanted != self.huge_pages_advised {
            let start = NonNull::from(&mut *self).cast::<u8>();
            os::advise_huge_pages(start, SEGMENT_SIZE, wanted);
            self.huge_pages_advised = wanted;
        }
    }

    /// Bytes of free pages that count as committed (S5): those written since they were last
    /// zeroed.
    fn committed_in_free_pages(&self) -> usize {
        self.pages[..self.page_count as usize]
            .iter()
            .filter(|page| !page.in_use && !page.memory_is_zero)
            .map(|page| page.area_size)
            .sum()
    }

    /// The free page `take_page` would take, left free (owner only); null when none is left.
    pub fn first_free_page(&mut self) -> *mut Page {
        if self.free_pages == 0 {
            return ptr::null_mut();
        }
        &mut self.pages[self.free_pages.trailing_zeros() as usize]
    }

    /// Takes the free page at `index` (owner only, S1).
    pub fn take_page_at(&mut self, index: usize) -> *mut Page {
        debug_assert!(self.free_pages & (1u64 << index) != 0);
        self.free_pages &= !(1u64 << index);
        self.used_pages += 1;
        PAGES_IN_USE.fetch_add(1, Ordering::Relaxed);
        let page = &mut self.pages[index];
        if page.memory_is_zero {
            os::note_committed(page.area_size as isize);
        }
        page
    }

    /// Gives back a page that holds no live block (owner only, S1/S4).
    pub fn return_page(&mut self, page: &mut Page) {
        debug_assert!(page.in_use && page.live_blocks() == 0);
        page.in_use = false;
        page.owner.store(0, Ordering::Relaxed);
        if page.capacity() > 0 {
            page.memory_is_zero = false;
        } else if page.memory_is_zero {
            // Never written: it stops counting as committed (S5).
            os::note_committed(-(page.area_size as isize));
        }
        self.free_pages |= 1u64 << page.index;
        self.used_pages -= 1;
        PAGES_IN_USE.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn has_free_page(&self) -> bool {
        self.free_pages != 0
    }

    /// Unregisters the segment and returns its memory to the OS (S3).
    ///
    /// # Safety
    /// No block of the segment may be live and no list may still link to it.
    pub unsafe fn release(segment: *mut Segment) {
        // SAFETY: the caller guarantees the segment is dead; its header is still mapped.
        unsafe {
            os::note_committed(-((*segment).committed_in_free_pages() as isize));
            SEGMENTS.fetch_sub(1, Ordering::Relaxed);
            let size = (*segment).mapping_size;
            registry::unregister(segment as usize);
            os::release(NonNull::new_unchecked(segment.cast()), size);
        }
    }
}

/// Returns a free page's memory to the OS (its purge), keeping the committed gauge (S5).
pub fn decommit_page(page: &mut Page) {
    debug_assert!(!page.in_use);
    let was_committed = !page.memory_is_zero;
    // SAFETY: a free page's area lies in its live segment and holds no live block.
    page.memory_is_zero = unsafe { os::decommit(page.area, page.area_size) };
    if was_committed && page.memory_is_zero {
        os::note_committed(-(page.area_size as isize));
    }
}

static SEGMENTS: AtomicUsize = AtomicUsize::new(0);
static PAGES_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Segments mapped (not huge ones), owned, spare or abandoned.
pub fn segment_count() -> usize {
    SEGMENTS.load(Ordering::Relaxed)
}

/// Pages serving blocks, in all segments.
pub fn pages_in_use() -> usize {
    PAGES_IN_USE.load(Ordering::Relaxed)
}

/// Segments whose owner thread has exited, waiting for another thread to adopt them.
struct AbandonedList {
    segments: List<Segment>,
}

// SAFETY: the list is only touched under its lock; the segments it links are unowned (S1).
unsafe impl Send for AbandonedList {}

static ABANDONED: SpinLock<AbandonedList> = SpinLock::new(
    Rank::AbandonedSegments,
    AbandonedList {
        segments: List::EMPTY,
    },
);

/// How many segments are on the abandoned list; changed under its lock, read without it.
static ABANDONED_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Puts an unowned segment at the back of the abandoned list: adopters take the oldest first,
/// which has had the longest for other threads to free its blocks. (Newest first, a program
/// whose threads come and go in debug mode, where freed blocks wait in the quarantine past
/// their thread's exit, re-adopted only segments still pinned by it, and the emptied ones
/// below were never reached: 2000 threads held 210 MB.)
///
/// # Safety
/// The segment's pages must already have no owner, the segment must be on no list, and the
/// caller must hold no other reference to it.
pub unsafe fn push_abandoned(segment: *mut Segment) {
    let mut list = ABANDONED.lock();
    // The caller's contract: the segment is unowned, on no list, and ours until it is on this
    // one.
    // SAFETY: L3: we hold the list's lock, and the segment is on no other list.
    unsafe { list.segments.push_back(segment) };
    ABANDONED_COUNT.fetch_add(1, Ordering::Relaxed);
}

/// Takes a segment off the abandoned list, if there is one; the caller becomes its sole user.
pub fn pop_abandoned() -> Option<NonNull<Segment>> {
    let mut list = ABANDONED.lock();
    // SAFETY: we hold the list's lock (L3).
    let segment = NonNull::new(unsafe { list.segments.pop_front() })?;
    ABANDONED_COUNT.fetch_sub(1, Ordering::Relaxed);
    Some(segment)
}

/// How many segments wait to be adopted (a relaxed read: no lock, possibly a moment old).
pub fn abandoned_count() -> usize {
    ABANDONED_COUNT.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_segment_layout_skips_the_header() {
        let segment = Segment::create(SegmentKind::Small).expect("segment");
        // SAFETY: the segment is ours and released at the end.
        unsafe {
            let segment = &mut *segment.as_ptr();
            assert_eq!(segment.page_count, 64);
            assert_eq!(segment.pages[0].area_size, 0);
            assert_eq!(segment.free_pages.count_ones(), 63);
            for index in 1..64 {
                let page = &segment.pages[index];
                assert_eq!(page.area as usize % (64 * 1024), 0);
                assert_eq!(page.area_size, 64 * 1024);
                assert_eq!(segment.page_of(page.area), page as *const Page as *mut Page);
                let last = page.area.add(page.area_size - 1);
                assert_eq!(segment.page_of(last), page as *const Page as *mut Page);
                assert_eq!(segment_of(last), segment as *mut Segment);
            }
            assert!(registry::contains(segment as *mut Segment as usize));
            let start = segment as *mut Segment;
            Segment::release(start);
            assert!(!registry::contains(start as usize));
        }
    }

    #[test]
    fn relayout_as_medium_and_large() {
        let segment = Segment::create(SegmentKind::Medium).expect("segment");
        // SAFETY: the segment is ours and released at the end.
        unsafe {
            let segment = &mut *segment.as_ptr();
            assert_eq!(segment.page_count, 8);
            assert_eq!(segment.pages[0].area_size, 512 * 1024 - HEADER_RESERVE);
            let page = segment.first_free_page();
            assert_eq!((*page).index, 0);
            segment.take_page_at(0);
            assert_eq!(segment.used_pages, 1);
            (*page).in_use = true;
            segment.return_page(&mut *page);
            segment.lay_out(SegmentKind::Large, false);
            assert_eq!(segment.page_count, 1);
            assert_eq!(segment.pages[0].area_size, SEGMENT_SIZE - HEADER_RESERVE);
            Segment::release(segment);
        }
    }
}
