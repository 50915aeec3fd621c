//! Resizing: in place when the block's class or mapping allows, else by moving the contents to
//! a new block with room to grow; on failure the original block is untouched and still live.

use crate::alloc::aligned::allocate_aligned;
use crate::alloc::free::free_owned_block;
use crate::alloc::huge::huge_block_size;
use crate::alloc::huge::segment_holding;
use crate::alloc::huge::MAX_ALIGN;
use crate::alloc::lookup::{block_domain, usable_size};
use crate::alloc::segment::SegmentKind;
use crate::alloc::size_class::LARGE_MAX;
use crate::alloc::size_class::{MAX_REQUEST, MIN_ALIGN};
use crate::policy::domain::Domain;
use core::ptr::{self, NonNull};

/// Resizes a block to `new_size` bytes, keeping its contents up to the smaller size. Stays in
/// place when the block's size class allows; otherwise moves the contents to a new block. On
/// failure returns `None` and the original block is untouched and still live. A null
/// `address` behaves as `malloc(new_size)`.
///
/// # Safety
/// `address` must be null or a live block from this allocator. On success it must no longer
/// be used (unless the same address is returned).
pub unsafe fn realloc(address: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
    // SAFETY: the caller's contract.
    unsafe { realloc_aligned(address, new_size, MIN_ALIGN) }
}

/// As [`realloc`], keeping the block aligned to `align` (as given when it was allocated).
///
/// # Safety
/// As [`realloc`]; `align` must be the alignment the block was allocated with, or smaller.
pub unsafe fn realloc_aligned(
    address: *mut u8,
    new_size: usize,
    align: usize,
) -> Option<NonNull<u8>> {
    // SAFETY: the caller's contract.
    NonNull::new(unsafe { reallocate(Domain::RAW, address, new_size, align) })
}

/// `realloc` through the `domain` family. A block of another domain is reported as a
/// mismatch, then moved into `domain` (the caller will free it through that family).
///
/// # Safety
/// As [`realloc_aligned`].
pub(crate) unsafe fn reallocate(
    domain: Domain,
    address: *mut u8,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    if crate::debug::active() {
        if new_size > MAX_REQUEST || !align.is_power_of_two() || align > MAX_ALIGN {
            return crate::platform::os::out_of_memory();
        }
        // SAFETY: debug mode checks the pointer itself.
        return unsafe { crate::debug::reallocate(domain, address, new_size, align) };
    }
    if address.is_null() {
        return allocate_aligned(domain, new_size, align, None);
    }
    if new_size > MAX_REQUEST {
        return crate::platform::os::out_of_memory();
    }
    // SAFETY: the caller guarantees a live block of ours.
    let (usable, owner) = unsafe { (usable_size(address), block_domain(address)) };
    if owner != domain {
        crate::policy::domain::mismatch(b"realloc", domain, owner, address as usize);
        return move_block(domain, owner, address, usable, new_size, align);
    }
    // SAFETY: the block is live, so its segment header is mapped.
    let segment = unsafe { segment_holding(address) };
    // SAFETY: as above.
    let is_huge = unsafe { (*segment).kind == SegmentKind::Huge };
    if is_huge && new_size > LARGE_MAX / 2 {
        // SAFETY: the caller owns the live huge block.
        unsafe {
            let old_size = (*segment).pages[0].block_size;
            let resized = crate::alloc::huge::resize(segment, address, new_size);
            if !resized.is_null() {
                crate::alloc::domain_heap::count_huge_resize(
                    domain,
                    old_size,
                    huge_block_size(resized),
                );
                if resized != address && crate::profile::ever_enabled() {
                    crate::profile::moved(address as usize, resized as usize);
                }
                return resized;
            }
            // Null: the kernel would not resize or move the mapping; the block moves by copy
            // (which reports ENOMEM if memory is short).
        }
    }
    if new_size <= usable && (new_size >= usable / 2 || usable <= MIN_ALIGN) {
        return address;
    }
    // A block that outgrows its size class moves; make room for more growth than asked, so a
    // block grown a little at a time (CPython's lists by an eighth, string builders by what
    // they append) moves a few times instead of at every class. Room past what is written is
    // never touched, so it costs address space, not resident memory. Falls back to the exact
    // size when the larger block cannot be had.
    if new_size > usable && usable >= GROWTH_ROOM_FROM {
        let roomy = new_size.max(usable + usable / 2);
        let moved = move_block(domain, owner, address, usable, roomy, align);
        if !moved.is_null() {
            return moved;
        }
    }
    move_block(domain, owner, address, usable, new_size, align)
}

/// Blocks at least this large get growth room when `realloc` moves them to grow.
pub(crate) const GROWTH_ROOM_FROM: usize = 256;

/// Moves the `owner` block at `address` (`usable` bytes) into a new block of `domain`.
pub(crate) fn move_block(
    domain: Domain,
    owner: Domain,
    address: *mut u8,
    usable: usize,
    new_size: usize,
    align: usize,
) -> *mut u8 {
    let moved = allocate_aligned(domain, new_size, align, None);
    if moved.is_null() {
        return moved;
    }
    // The old block goes back through its own family (the caller reported any mismatch).
    // SAFETY: both blocks are live and distinct; we copy what both can hold.
    unsafe {
        ptr::copy_nonoverlapping(address, moved, usable.min(new_size));
        free_owned_block(owner, address);
    }
    moved
}

impl Domain {
    /// Resizes a block of this domain as [`realloc`] does. A block of another domain is
    /// reported as a mismatch and moved into this one.
    ///
    /// # Safety
    /// As [`realloc`].
    pub unsafe fn realloc(self, address: *mut u8, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller's contract.
        NonNull::new(unsafe { reallocate(self, address, new_size, MIN_ALIGN) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::testing::{check, fill};
    use crate::*;

    #[test]
    fn realloc_keeps_contents_across_every_kind() {
        let steps = [
            1,
            20,
            200,
            3000,
            40_000,
            400_000,
            900_000,
            9 << 20,
            50 << 20,
        ];
        let mut block = malloc(1).unwrap();
        fill(block, 1, 1);
        let mut kept = 1;
        for &size in steps.iter().chain(steps.iter().rev()) {
            // SAFETY: `block` is live.
            block = unsafe { realloc(block.as_ptr(), size) }.unwrap();
            kept = kept.min(size);
            check(block, kept, 1);
            fill(block, size, 1);
            kept = size;
        }
        // SAFETY: live block.
        unsafe { free(block.as_ptr()) };
    }

    #[test]
    fn realloc_stays_in_place_within_the_class() {
        let block = malloc(100).unwrap();
        // SAFETY: live block; class of 100 is 112 bytes.
        unsafe {
            assert_eq!(realloc(block.as_ptr(), 112), Some(block));
            assert_eq!(realloc(block.as_ptr(), 60), Some(block));
            free(block.as_ptr());
        }
    }

    #[test]
    fn a_block_grown_an_eighth_at_a_time_moves_rarely() {
        let mut size = 1000usize;
        let mut block = crate::malloc(size).unwrap().as_ptr();
        let mut moves = 0;
        // SAFETY: each block is live and `size` bytes long; the old one is gone once moved.
        unsafe {
            block.write_bytes(7, size);
            while size < (1 << 20) {
                size += size / 8;
                let grown = crate::realloc(block, size).unwrap().as_ptr();
                moves += usize::from(grown != block);
                assert_eq!(*grown.add(size / 9), 7, "contents kept");
                grown.add(size / 9 * 8).write_bytes(7, size - size / 9 * 8);
                block = grown;
            }
            crate::free(block);
        }
        // Four classes per doubling would move about 40 times on the way to 1 MiB; half again
        // as much room at each move takes about 17 (huge blocks grow in place by mremap).
        assert!(moves <= 20, "{moves} moves");
    }

    #[test]
    fn huge_blocks_grow_by_remapping() {
        let size = 8 << 20;
        let block = malloc(size).unwrap();
        // SAFETY: live huge block; each realloc hands it on.
        unsafe {
            *block.as_ptr() = 1;
            *block.as_ptr().add(size - 1) = 2;
            let grown = realloc(block.as_ptr(), 64 << 20).unwrap();
            assert_eq!(grown.as_ptr() as usize % MIN_ALIGN, 0);
            assert!(is_ours(grown.as_ptr()));
            assert_eq!(*grown.as_ptr(), 1);
            assert_eq!(*grown.as_ptr().add(size - 1), 2);
            assert!(usable_size(grown.as_ptr()) >= 64 << 20);
            let shrunk = realloc(grown.as_ptr(), 2 << 20).unwrap();
            assert_eq!(shrunk, grown, "shrinking a huge block stays in place");
            assert!(usable_size(shrunk.as_ptr()) < 3 << 20);
            free(shrunk.as_ptr());
        }
    }
}
