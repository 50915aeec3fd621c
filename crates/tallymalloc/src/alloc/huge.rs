//! Huge blocks: requests beyond `LARGE_MAX`, each in a mapping of its own.
//!
//! A huge block's mapping starts with a segment header of kind `Huge` (so `free` finds it by
//! masking like any other block) and the block begins `max(HEADER_RESERVE, alignment)` bytes
//! in, inside the mapping's first `SEGMENT_SIZE`. The mapping may be much longer than a
//! segment. Growing and shrinking use `mremap`, which moves page tables, never bytes, except
//! that a block that at least doubles moves by copy into a cached mapping when there is one
//! (its pages are already faulted in; see [`grow_into_cached`]). A freed mapping waits in
//! `huge_cache` for the next huge block: taken whole when it is about the right length, split
//! when it is longer (its tail, pages and all, is cached again for another block), moved with
//! others into one mapping when it is shorter ([`assemble`]), so a program cycling through
//! huge blocks of changing sizes faults in only what its live blocks need
//! (docs/MEASUREMENTS.md, "Huge blocks"). With `TALLYMALLOC_HUGE_PAGES=1`, mappings of 8 MiB
//! or more ask for transparent huge pages.
//!
//! A mapping assembled from several is several kernel mappings side by side: the kernel moves
//! such a range in one `mremap` (from Linux 6.17) but will not resize it, so it grows by moving
//! into a longer range with room to spare, or by copy (U7).
//!
//! Invariants:
//! - **U1**: the header's `mapping_size`, page 0's `area` and `block_size` describe the mapping
//!   exactly: `area + block_size + guard == start + mapping_size`, the guard being 0 but in
//!   secure mode (U5).
//! - **U3**: a freed huge mapping goes to `huge_cache` (out of the registry, C1) or back to the
//!   OS; a cached one comes back through `alloc` only, described anew.
//! - **U2**: a huge block has one user at a time (whoever holds the pointer), so freeing and
//!   resizing need no lock: the holder owns the whole mapping. Its page's `owner` is always 0,
//!   so every free reaches `free_slow`, which sends it here.
//! - **U4**: a huge mapping counts in `os::committed_bytes` from its mapping until it goes back
//!   to the OS (including while cached).
//! - **U6**: a block aligned to `SEGMENT_SIZE` or more starts exactly one segment into its
//!   mapping, on a segment boundary; no other block of ours starts on one (every other block
//!   lies past its segment's header). `segment_of` of such a block is the block itself, so
//!   the entry points test for a boundary before masking, and find the header one segment
//!   before it ([`over_aligned_segment`]); the registry marks only the header's slot, so the
//!   C library's registry test sends these frees to its slow path. `free` of the Rust API
//!   tests the boundary instead of null (the same one instruction: null is a boundary).
//! - **U5**: in secure mode a huge block stops one OS page short of its mapping's end, and that
//!   page is a guard (`PROT_NONE`) while the block is live, so an overflow off its end faults.
//!   `mremap` cannot take a range whose pages differ in protection, so the guard is lifted
//!   before the mapping is resized or cached and set again at the new end.
//! - **U7**: a huge mapping may be several kernel mappings side by side ([`assemble`]). Only
//!   `mremap` minds, and every use of it here has a way out when the kernel refuses: a tail
//!   that cannot be split off is unmapped, a mapping that cannot be grown is moved whole
//!   ([`move_mapping`]) or, failing that, copied by the caller.

use crate::alloc::huge_cache;
use crate::alloc::page::HUGE_CLASS;
use crate::alloc::registry;
use crate::alloc::segment::{segment_of, Segment, SegmentKind, HEADER_RESERVE, SEGMENT_SIZE};
use crate::platform::os;
use crate::policy::domain::Domain;
use crate::policy::secure;
use core::ptr::{self, NonNull};

/// The largest alignment any allocation may ask for: a quarter of the 47-bit user address space
/// (whether one can be had is the kernel's answer).
pub const MAX_ALIGN: usize = 1 << 45;

/// Where a block of alignment `align` starts in its mapping: past the header, on the
/// alignment. From a segment's alignment on, that is one segment in, on a segment boundary
/// (U6), and the mapping is placed so that this address has the alignment.
fn block_offset(align: usize) -> usize {
    HEADER_RESERVE.max(align).min(SEGMENT_SIZE)
}

/// The huge segment of the block at `address` if `address` is a segment boundary, where only
/// blocks of alignment `SEGMENT_SIZE` or more start (U6): the registered segment before it,
/// if that is a huge one whose block starts there. `None` for any other address.
pub fn over_aligned_segment(address: usize) -> Option<*mut Segment> {
    if address & (SEGMENT_SIZE - 1) != 0 || address < SEGMENT_SIZE {
        return None;
    }
    let start = address - SEGMENT_SIZE;
    if !registry::contains(start) {
        return None;
    }
    let segment = start as *mut Segment;
    // SAFETY: a registered segment's header is mapped (registry.rs).
    let is_its_block = unsafe {
        (*segment).kind == SegmentKind::Huge && (*segment).pages[0].area as usize == address
    };
    is_its_block.then_some(segment)
}

fn mapping_size_for(offset: usize, size: usize) -> Option<usize> {
    let page = os::page_size();
    let end = offset
        .checked_add(size)?
        .checked_add(guard_size())?
        .checked_add(page - 1)?;
    Some(end & !(page - 1))
}

/// The guard at the end of every huge mapping: an OS page in secure mode, else none (U5).
fn guard_size() -> usize {
    if secure::active() {
        os::page_size()
    } else {
        0
    }
}

/// Maps a huge block of `size` bytes aligned to `align` (a power of two up to [`MAX_ALIGN`]) for
/// `domain`, reusing a cached mapping when one fits. Null when the OS refuses. `zero_bytes` asks
/// for that many leading bytes to be zero (fresh mappings are zero already; cached ones are
/// cleared).
pub fn alloc(size: usize, align: usize, zero_bytes: Option<usize>, domain: Domain) -> *mut u8 {
    alloc_led(size, align, 0, zero_bytes, domain)
}

/// As [`alloc`], but it is the address `lead` bytes into the block (a multiple of 16, less
/// than the header's room) that has the alignment: for debug mode's blocks, whose header
/// precedes the user's bytes. Beyond a segment's alignment the block starts `lead` bytes
/// before the segment boundary, so it lies in its segment's first slot like any block.
pub fn alloc_led(
    size: usize,
    align: usize,
    lead: usize,
    zero_bytes: Option<usize>,
    domain: Domain,
) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align <= MAX_ALIGN && lead < HEADER_RESERVE);
    debug_assert!(lead == 0 || align >= SEGMENT_SIZE);
    let offset = block_offset(align) - lead;
    // At least a byte, so that even an empty block has its page mapped.
    let Some(mapping_size) = mapping_size_for(offset, size.max(1)) else {
        return os::out_of_memory();
    };
    // Cached mappings start on a segment boundary, which serves alignments up to a segment.
    if align <= SEGMENT_SIZE {
        if let Some((start, length, reused)) = take_cached(mapping_size) {
            let segment = start.as_ptr().cast::<Segment>();
            // SAFETY: C1: the mapping is ours alone, its header intact; `take_cached`
            // registered it, `length` bytes long now.
            unsafe {
                (*segment).mapping_size = length;
                let block = describe(segment, offset, domain);
                // Bytes past the reused pages are fresh from the kernel, zero already.
                if let Some(bytes) = zero_bytes {
                    ptr::write_bytes(block, 0, bytes.min(reused.saturating_sub(offset)));
                }
                return guarded(segment, block);
            }
        }
    }
    let start = if align <= SEGMENT_SIZE {
        os::reserve_aligned(mapping_size, SEGMENT_SIZE)
    } else {
        // The block, a segment in, gets the alignment; the start is then a segment boundary.
        os::reserve_aligned_at(mapping_size, align, SEGMENT_SIZE)
    };
    let Some(start) = start else {
        return os::out_of_memory();
    };
    if mapping_size >= HUGE_PAGES_FROM && crate::policy::options::huge_pages() {
        // A huge block is likely filled: a fault per 2 MiB instead of per 4 KiB. The advice
        // stays with the mapping when it is resized, split or cached.
        os::advise_huge_pages(start, mapping_size, true);
    }
    // SAFETY: the mapping is fresh and ours.
    let Some(segment) = (unsafe { Segment::start_in(start, SegmentKind::Huge, mapping_size) })
    else {
        return os::out_of_memory();
    };
    os::note_committed(mapping_size as isize);
    // SAFETY: we own the new header (U2).
    unsafe { guarded(segment.as_ptr(), describe(segment.as_ptr(), offset, domain)) }
}

/// Sets the guard of the new huge block `block` of `segment` (U5) and returns the block; on
/// failure frees it, which nobody has seen, and returns null.
///
/// # Safety
/// `segment` must be the huge segment of the new block, owned by the caller (U2).
unsafe fn guarded(segment: *mut Segment, block: *mut u8) -> *mut u8 {
    // SAFETY: U5: the mapping's last page, past the block `describe` laid out.
    unsafe {
        if secure::active() && !set_guard(segment, true) {
            free(segment);
            return os::out_of_memory();
        }
    }
    block
}

/// Sets or lifts the guard page at the end of a huge mapping (secure mode, U5).
///
/// # Safety
/// `segment` must be a huge segment the caller owns, laid out for secure mode.
unsafe fn set_guard(segment: *mut Segment, on: bool) -> bool {
    let page = os::page_size();
    // SAFETY: the caller's contract: the last page of the mapping, which no block covers.
    unsafe {
        let last = NonNull::new_unchecked(segment.cast::<u8>().add((*segment).mapping_size - page));
        if on {
            os::guard(last, page)
        } else {
            os::unguard(last, page)
        }
    }
}

/// A cached mapping longer than a request by at least this much is split, its tail cached
/// again for another block; a shorter excess stays with the block.
const SPLIT_MIN: usize = TRANSPARENT_HUGE_PAGE;

/// Mappings from this size up ask for transparent huge pages: long enough that most of one is
/// whole huge pages, and that a program touching only its first bytes (a buffer sized for the
/// worst case) is not charged 2 MiB for each of many mid-sized blocks.
const HUGE_PAGES_FROM: usize = 4 * TRANSPARENT_HUGE_PAGE;

/// The size of a transparent huge page on x86-64 and most arm64 kernels. Splits fall on its
/// multiples, so that the huge pages of a mapping move whole.
const TRANSPARENT_HUGE_PAGE: usize = 2 << 20;

/// A registered mapping of at least `wanted` bytes made of cached ones (their headers intact,
/// C1), or `None`: the one cached mapping that covers `wanted` bytes, else several moved one
/// after another into one mapping, any bytes still missing fresh at its end. The pages they
/// had stay faulted in, so a program whose huge blocks change size from round to round reuses
/// its memory instead of mapping and faulting in more. Returns the mapping, its length and
/// how many of its leading bytes were reused (the rest is fresh, zero).
fn take_cached(wanted: usize) -> Option<(NonNull<u8>, usize, usize)> {
    let pieces = huge_cache::take_pieces(wanted);
    let (start, size) = pieces.mappings().next()?;
    let (start, size, reused) = if pieces.count() == 1 && size >= wanted {
        (start, size, size)
    } else {
        // SAFETY: C1: the cache handed the pieces over, whole, to us alone.
        unsafe { assemble(&pieces, wanted)? }
    };
    // SAFETY: C1, or `assemble`'s result, which is laid out as a cached mapping is.
    let (start, length) = unsafe { fit_cached(start, size, wanted)? };
    Some((start, length, reused.min(length)))
}

/// Moves the cached mappings `pieces` one after another into a fresh reservation of at least
/// `wanted` bytes: the page tables move, not the bytes. The first piece's header becomes the
/// whole mapping's. Returns the mapping, its length and how many leading bytes came from the
/// pieces; a piece the kernel will not move goes back to the OS with those after it.
///
/// # Safety
/// The pieces must be whole cached mappings that the cache handed over (C1).
unsafe fn assemble(
    pieces: &huge_cache::Pieces,
    wanted: usize,
) -> Option<(NonNull<u8>, usize, usize)> {
    let length = pieces.total_bytes().max(wanted);
    let Some(destination) = os::reserve_aligned(length, SEGMENT_SIZE) else {
        pieces.release_from(0);
        return None;
    };
    let mut moved = 0;
    for (index, (start, size)) in pieces.mappings().enumerate() {
        // The pieces total at most `length`, so `[moved, moved + size)` lies in the destination.
        // SAFETY: the caller's contract (C1); that range of the fresh reservation is untouched.
        let placed = unsafe { os::move_into(start, size, destination.add(moved)) };
        if !placed {
            pieces.release_from(index);
            break;
        }
        moved += size;
    }
    if moved == 0 {
        // SAFETY: the reservation is ours and nothing was moved into it.
        unsafe { os::release(destination, length) };
        return None;
    }
    // The pieces were committed already (U4); the rest of the reservation is new.
    os::note_committed((length - moved) as isize);
    if length >= HUGE_PAGES_FROM && crate::policy::options::huge_pages() {
        os::advise_huge_pages(destination, length, true);
    }
    Some((destination, length, moved))
}

/// Makes a mapping of at least `wanted` bytes, laid out as a cached one is, fit a block of
/// `wanted` and registers it: kept as it is when the excess is small, else split (the tail,
/// its pages faulted in, goes back to the cache as a mapping of its own for another block).
/// Returns the mapping and its length now; on failure it is released and `None` returned.
///
/// # Safety
/// `[start, start + size)` must be a whole mapping with a huge header, holding no block, that
/// nobody else refers to (C1).
unsafe fn fit_cached(
    start: NonNull<u8>,
    size: usize,
    wanted: usize,
) -> Option<(NonNull<u8>, usize)> {
    debug_assert!(size >= wanted);
    // What stays with the block when the mapping is split: whole huge pages for a long block
    // (so they move whole, at a quarter's waste at most), else just what it needs.
    let kept = if wanted >= 4 * TRANSPARENT_HUGE_PAGE {
        wanted.next_multiple_of(TRANSPARENT_HUGE_PAGE).min(size)
    } else {
        wanted
    };
    let mut current = size;
    // SAFETY: the caller's contract: the whole mapping is ours and holds nothing.
    unsafe {
        if size - kept >= SPLIT_MIN {
            if split_off_tail(start, size, kept) {
                current = kept;
            } else if os::remap_in_place(start, size, kept) {
                // Shrinking drops the tail's pages, but the block no longer holds them.
                os::note_committed(kept as isize - size as isize);
                current = kept;
            }
        }
        if !registry::register(start.as_ptr() as usize) {
            os::note_committed(-(current as isize));
            os::release(start, current);
            return None;
        }
    }
    Some((start, current))
}

/// Moves the tail `[start + kept, start + size)` of a cached mapping to a mapping of its own,
/// gives it a header and caches it (or, if the cache will not take it, gives it back to the
/// OS): the mapping at `start` is then `kept` bytes long. Returns false, changing nothing, if
/// the OS refuses the move.
///
/// # Safety
/// `[start, start + size)` must be a whole mapping handed over by the cache (C1); `kept` a
/// multiple of the page size, at least a header's room and less than `size`.
unsafe fn split_off_tail(start: NonNull<u8>, size: usize, kept: usize) -> bool {
    let tail = size - kept;
    let Some(destination) = os::reserve_aligned(tail, SEGMENT_SIZE) else {
        return false;
    };
    // SAFETY: the caller's contract: the tail is ours and holds nothing; the destination is a
    // fresh reservation of `tail` bytes.
    unsafe {
        let source = NonNull::new_unchecked(start.as_ptr().add(kept));
        if !os::remap_to(source, tail, tail, destination) {
            return false;
        }
        // The tail is a whole mapping now, laid out as a cached one is (C1): a header, out of
        // the registry.
        Segment::write_header(destination, SegmentKind::Huge, tail);
        if !huge_cache::put(destination, tail) {
            os::note_committed(-(tail as isize));
            os::release(destination, tail);
        }
    }
    true
}

/// Grows the huge block at `address` by copying it into a cached mapping of at least
/// `new_mapping` bytes, and frees the old one (to the cache). Worth it when the copy is smaller
/// than about twice the growth: extending a mapping faults in fresh zeroed pages, about as dear
/// per byte as copying twice, while cached pages are already there (docs/MEASUREMENTS.md,
/// "Growing a huge block").
///
/// # Safety
/// As [`resize`]; `new_mapping` is larger than the block's mapping.
unsafe fn grow_into_cached(
    segment: *mut Segment,
    address: *mut u8,
    new_mapping: usize,
    domain: Domain,
) -> Option<*mut u8> {
    let (start, cached_size) = huge_cache::take(new_mapping)?;
    if !registry::register(start.as_ptr() as usize) {
        os::note_committed(-(cached_size as isize));
        // SAFETY: C1: the mapping is ours and unused.
        unsafe { os::release(start, cached_size) };
        return None;
    }
    // The old block, which the caller owns (U2), lies in another mapping.
    // SAFETY: C1: the cache handed us the whole mapping, header intact.
    unsafe {
        let moved = start.as_ptr().cast::<Segment>();
        (*moved).mapping_size = cached_size;
        let offset = address as usize - segment as usize;
        let block = describe(moved, offset, domain);
        ptr::copy_nonoverlapping(address, block, (*segment).mapping_size - offset);
        free(segment);
        Some(block)
    }
}

/// Sets page 0 to describe the whole block (U1) and returns the block's address.
///
/// # Safety
/// The caller must own the huge segment's header.
unsafe fn describe(segment: *mut Segment, offset: usize, domain: Domain) -> *mut u8 {
    // SAFETY: the caller owns the header.
    unsafe {
        let page = &mut (*segment).pages[0];
        let area = (segment as *mut u8).add(offset);
        let size = (*segment).mapping_size - offset - guard_size();
        page.area = area;
        page.area_size = size;
        page.block_size = size;
        page.class = HUGE_CLASS;
        page.in_use = true;
        page.domain = domain.stored();
        page.used = 1;
        page.set_capacity(1);
        page.reserved = 1;
        area
    }
}

/// The usable size of a huge block that starts at `address`.
///
/// # Safety
/// `segment` must be the huge segment holding the live block `address`.
pub unsafe fn usable_size(segment: *mut Segment, address: *const u8) -> usize {
    // SAFETY: U1/U2: the header describes the block, which the caller holds.
    unsafe {
        let page = &(*segment).pages[0];
        page.area as usize + page.block_size - address as usize
    }
}

/// Frees a huge block: its mapping goes to the cache, or back to the OS.
///
/// # Safety
/// `segment` must be the huge segment of a block that the caller owns (U2).
pub unsafe fn free(segment: *mut Segment) {
    // SAFETY: the caller owns the block and thus the mapping; its header is mapped.
    unsafe {
        let page = &mut (*segment).pages[0];
        if !page.in_use {
            // Only reachable by the Rust API's unchecked free of a block freed before and still
            // cached (the registry turns the C library's double frees away first).
            crate::report_invalid_pointer(b"free", page.area as usize);
            return;
        }
        page.in_use = false;
        let size = (*segment).mapping_size;
        registry::unregister(segment as usize);
        let start = NonNull::new_unchecked(segment.cast::<u8>());
        // A cached mapping is all writable (U5); one that cannot be made so is released.
        let cacheable = !secure::active() || set_guard(segment, false);
        if !cacheable || !huge_cache::put(start, size) {
            os::note_committed(-(size as isize));
            os::release(start, size);
        }
    }
}

/// Whether a block whose mapping is `old_mapping` bytes long stays as it is when resized to
/// need `new_mapping`: when that shrinks it by less than a quarter. A block grown into a
/// longer mapping (see [`resize_unguarded`]) then grows on into it, a little at a time,
/// without a system call, and one that shrinks a little keeps at most a quarter idle.
fn keeps_mapping(old_mapping: usize, new_mapping: usize) -> bool {
    new_mapping <= old_mapping && old_mapping - new_mapping < old_mapping / 4
}

/// Resizes the huge block at `address` to hold `new_size` bytes: into a cached mapping when
/// it grows enough for that to pay, else in place if the kernel can, else by moving its pages
/// to a new aligned mapping. Returns the (possibly moved) block, or null with the block
/// untouched: then the caller moves it by copy. A block aligned beyond a segment (U6) is
/// resized only in place, and one assembled from several mappings (U7) may not move whole.
///
/// # Safety
/// `segment` must be the huge segment of the live block `address`, owned by the caller (U2).
pub unsafe fn resize(segment: *mut Segment, address: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: U1/U2: the caller owns the block and its header.
    unsafe {
        let offset = address as usize - segment as usize;
        let Some(new_mapping) = mapping_size_for(offset, new_size) else {
            return os::out_of_memory();
        };
        if keeps_mapping((*segment).mapping_size, new_mapping) {
            return address;
        }
        let domain = Domain::from_stored((*segment).pages[0].domain);
        if secure::active() {
            // U5: the mapping is resized whole; the block gets its guard back, at its new end
            // or where it was when resizing fails.
            if !set_guard(segment, false) {
                return os::out_of_memory();
            }
            let resized = resize_unguarded(segment, address, new_size, domain);
            let holder = if resized.is_null() {
                segment
            } else {
                segment_of(resized)
            };
            if !set_guard(holder, true) {
                // The block is intact and still served, but says so: it has lost its guard.
                let mut line = crate::platform::text::Line::new();
                line.text(b"tallymalloc: secure mode: no guard page after the huge block at ")
                    .hex(resized.max(address) as usize)
                    .text(b" (mprotect failed)\n");
                line.write_to_stderr();
            }
            return resized;
        }
        resize_unguarded(segment, address, new_size, domain)
    }
}

/// [`resize`] for a mapping with no guard set.
///
/// # Safety
/// As [`resize`].
unsafe fn resize_unguarded(
    segment: *mut Segment,
    address: *mut u8,
    new_size: usize,
    domain: Domain,
) -> *mut u8 {
    // SAFETY: U1/U2: the caller owns the block and its header.
    unsafe {
        let start = NonNull::new_unchecked(segment.cast::<u8>());
        let offset = address as usize - segment as usize;
        let old_mapping = (*segment).mapping_size;
        let Some(new_mapping) = mapping_size_for(offset, new_size) else {
            return os::out_of_memory();
        };
        if keeps_mapping(old_mapping, new_mapping) {
            return address;
        }
        if offset >= SEGMENT_SIZE {
            // U6: a block aligned beyond a segment keeps its place or moves by copy (the
            // caller's), since other mappings are not placed for its alignment.
            if os::remap_in_place(start, old_mapping, new_mapping) {
                os::note_committed(new_mapping as isize - old_mapping as isize);
                (*segment).mapping_size = new_mapping;
                return describe(segment, offset, domain);
            }
            return ptr::null_mut();
        }
        let growth = new_mapping.saturating_sub(old_mapping);
        if growth > 0 && old_mapping - offset <= 2 * growth {
            if let Some(moved) = grow_into_cached(segment, address, new_mapping, domain) {
                return moved;
            }
        }
        if os::remap_in_place(start, old_mapping, new_mapping) {
            os::note_committed(new_mapping as isize - old_mapping as isize);
            (*segment).mapping_size = new_mapping;
            return describe(segment, offset, domain);
        }
        // Shrinking in place cannot fail. Growing moves the pages to a fresh aligned range,
        // which the kernel grows as it goes for a mapping it made in one piece; one that
        // `take_cached` assembled from several it can move but not resize, so it moves into a
        // range a quarter longer than asked, room for growing a little at a time without
        // moving each time (`keeps_mapping`). Null, with `errno` as it was, sends the caller
        // to move the block by copy.
        let roomy = (new_mapping + new_mapping / 4).next_multiple_of(os::page_size());
        let moved = move_mapping(start, old_mapping, new_mapping, false)
            .or_else(|| move_mapping(start, old_mapping, roomy, true));
        let Some(moved) = moved else {
            return ptr::null_mut();
        };
        let moved = moved.as_ptr().cast::<Segment>();
        describe(moved, offset, domain)
    }
}

/// Moves the huge mapping `[start, start + old_size)` to a fresh aligned range of `length`
/// bytes and registers it there instead; `length - old_size` fresh bytes follow the moved
/// ones. `in_pieces` moves the pages without asking the kernel to resize the mapping, which it
/// cannot do for one made of several. Returns the new start with the header's size set, or
/// `None`, the mapping untouched.
///
/// # Safety
/// The mapping must be a huge one whose block the caller owns (U2); `length > old_size`.
unsafe fn move_mapping(
    start: NonNull<u8>,
    old_size: usize,
    length: usize,
    in_pieces: bool,
) -> Option<NonNull<u8>> {
    let destination = os::reserve_aligned(length, SEGMENT_SIZE)?;
    // SAFETY: U2: the caller owns the source; the destination is fresh, `length` bytes long.
    unsafe {
        if !registry::register(destination.as_ptr() as usize) {
            os::release(destination, length);
            return None;
        }
        let moved = if in_pieces {
            let moved = os::move_into(start, old_size, destination);
            if !moved {
                os::release(destination, length);
            }
            moved
        } else {
            // On failure this releases the destination itself.
            os::remap_to(start, old_size, length, destination)
        };
        if !moved {
            registry::unregister(destination.as_ptr() as usize);
            return None;
        }
        registry::unregister(start.as_ptr() as usize);
        os::note_committed(length as isize - old_size as isize);
        (*destination.as_ptr().cast::<Segment>()).mapping_size = length;
    }
    Some(destination)
}

/// The whole usable size of the huge block holding `address` (its page's block).
///
/// # Safety
/// `address` must be a live huge block.
pub unsafe fn huge_block_size(address: *const u8) -> usize {
    // SAFETY: the caller's contract: the huge header is mapped (U1).
    unsafe { (*segment_holding(address)).pages[0].block_size }
}

/// The header of the segment of the live block `address`: masked, or for a block aligned
/// beyond a segment, found one segment before it (U6).
///
/// # Safety
/// `address` must be a live block of ours.
pub unsafe fn segment_holding(address: *const u8) -> *mut Segment {
    if address as usize & crate::alloc::segment::SEGMENT_MASK == 0 {
        if let Some(segment) = over_aligned_segment(address as usize) {
            return segment;
        }
    }
    crate::alloc::segment::segment_of(address)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_cached_mapping_of_another_size_serves_zeroed_memory() {
        // Odd sizes, so that other tests' huge blocks rarely meet these mappings.
        for (freed, wanted) in [
            (3 << 20 | 4096, 7 << 20 | 8192),
            (13 << 20, 1 << 20 | 12288),
        ] {
            let block = crate::malloc(freed).unwrap().as_ptr();
            // SAFETY: a live block of `freed` bytes, freed once.
            unsafe {
                block.write_bytes(0xAB, freed);
                crate::free(block);
            }
            let zeroed = crate::calloc(1, wanted).unwrap().as_ptr();
            // SAFETY: a live block of `wanted` bytes.
            let bytes = unsafe { core::slice::from_raw_parts(zeroed, wanted) };
            assert!(bytes.iter().all(|&byte| byte == 0), "{freed} -> {wanted}");
            // SAFETY: a live block, freed once.
            unsafe { crate::free(zeroed) };
        }
    }
}
