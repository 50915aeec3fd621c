//! What the allocator knows of an address: whether it is ours, whether it starts a block, the
//! block's domain and usable size.

use crate::alloc::huge::segment_holding;
use crate::alloc::segment::SegmentKind;
use crate::policy::domain::Domain;

/// The domain of the live block at `address` (of any kind, U6 included).
///
/// # Safety
/// `address` must be a live block of ours.
pub(crate) unsafe fn block_domain(address: *const u8) -> Domain {
    // SAFETY: the caller's contract.
    unsafe {
        match crate::alloc::huge::over_aligned_segment(address as usize) {
            Some(segment) => Domain::from_stored((*segment).pages[0].domain),
            None => crate::alloc::domain_heap::domain_of(address),
        }
    }
}

/// How many bytes the block at `address` can hold: at least what was asked for.
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn usable_size(address: *const u8) -> usize {
    if crate::debug::active() {
        // SAFETY: the caller's contract: a live block, so a debug block (D1).
        return unsafe { crate::debug::usable_size(address) };
    }
    // SAFETY: the block is live, so its segment header and page are mapped and constant.
    unsafe {
        let segment = segment_holding(address);
        if (*segment).kind == SegmentKind::Huge {
            return crate::alloc::huge::usable_size(segment, address);
        }
        let page = &*(*segment).page_of(address);
        let start = if page.flags() & crate::alloc::page::FLAG_HAS_ALIGNED != 0 {
            page.block_start(address.cast_mut())
        } else {
            address.cast_mut()
        };
        page.block_size - (address as usize - start as usize)
    }
}

/// Whether `address` lies in memory tallymalloc manages: true for every live block it handed
/// out, false for null, the stack, other allocators' blocks, and unmapped memory. O(1), no lock.
pub fn is_ours(address: *const u8) -> bool {
    crate::alloc::registry::contains(address as usize) || is_over_aligned_block(address as usize)
}

/// Whether `address` is a block aligned beyond a segment (U6 in huge.rs), or in debug mode a
/// debug block whose header lies in our memory just before such a boundary. Cold: only
/// addresses the registry does not know get here.
#[cold]
#[inline(never)]
pub(crate) fn is_over_aligned_block(address: usize) -> bool {
    if crate::debug::active() {
        return address & crate::alloc::segment::SEGMENT_MASK == 0
            && crate::alloc::registry::contains(address.wrapping_sub(crate::debug::HEADER_SIZE));
    }
    crate::alloc::huge::over_aligned_segment(address).is_some()
}

/// Whether `address` is where one of our blocks starts (or lies in a block handed out at an
/// offset for alignment): what `free`, `realloc` and `usable_size` may be given. False for
/// addresses that are not ours and for those inside our memory that start no block (inside a
/// block, in a page's slack, in a segment's header), which the C library reports and ignores.
/// Blocks carry no mark of being live, so a freed block's start still counts. In debug mode
/// blocks are checked by debug mode itself, and this is true for every address of ours.
pub fn is_block_start(address: *const u8) -> bool {
    let address = address as usize;
    if !crate::alloc::registry::contains(address) {
        return is_over_aligned_block(address);
    }
    // SAFETY: the registry says the address lies in a live segment of ours; only that
    // segment's header is read, never the memory at `address`.
    crate::debug::active() || unsafe { crate::alloc::domain_heap::is_block(address) }
}

/// The domain of the live block at `address`.
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn domain_of(address: *const u8) -> Domain {
    // SAFETY: the caller's contract. Every page's domain is registered: ids are never freed.
    unsafe { block_domain(address) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ptr;

    #[test]
    fn foreign_addresses_are_not_ours() {
        let local = 0u8;
        assert!(!is_ours(&local));
        assert!(!is_ours(ptr::null()));
        let boxed = Box::new(1u64); // the system allocator in unit tests
        assert!(!is_ours(&*boxed as *const u64 as *const u8));
    }
}
