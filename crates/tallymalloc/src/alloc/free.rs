//! Freeing: null and blocks aligned beyond a segment are told apart from the rest with one
//! test; the rest go to `domain_heap::free`. `free_checked` asks the registry first, for
//! callers (the C library) whose pointers may not be ours.

use crate::alloc::lookup::{block_domain, is_over_aligned_block};
use crate::policy::domain::Domain;
use crate::policy::misuse::report_invalid_pointer;

/// Frees a block. Null is ignored.
///
/// # Safety
/// `address` must be null or a live block from this allocator, not freed since.
#[inline]
pub unsafe fn free(address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { free_in(Domain::RAW, address) }
}

/// Frees a block (or null) through the `domain` family.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub(crate) unsafe fn free_in(domain: Domain, address: *mut u8) {
    // A segment boundary is null or a block aligned beyond a segment (U6 in huge.rs): one test,
    // as cheap as the null test it replaces.
    if address as usize & crate::alloc::segment::SEGMENT_MASK == 0 {
        if !free_on_boundary(domain, address) {
            report_invalid_pointer(b"free", address as usize);
        }
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { crate::alloc::domain_heap::free(domain, address) }
}

/// Frees what [`free_in`] found on a segment boundary: nothing for null, else a block aligned
/// beyond a segment (or, in debug mode, whatever debug mode makes of it). Returns false, doing
/// nothing, for any other address.
#[cold]
#[inline(never)]
pub(crate) fn free_on_boundary(domain: Domain, address: *mut u8) -> bool {
    if address.is_null() {
        return true;
    }
    if crate::debug::active() {
        let _errno = crate::platform::os::ErrnoGuard::save();
        // SAFETY: debug mode checks the pointer itself.
        unsafe { crate::debug::free(domain, address) };
        return true;
    }
    match crate::alloc::huge::over_aligned_segment(address as usize) {
        // SAFETY: the block's own huge segment; the caller frees a live block.
        Some(segment) => unsafe {
            crate::alloc::domain_heap::free_huge_block(domain, segment, address)
        },
        None => return false,
    }
    true
}

/// Frees `address` if it is one of our blocks and returns true; returns true for null too
/// (nothing to do) and false for any other address, which is left alone. One registry lookup
/// decides both (see `registry.rs`: null is never ours).
///
/// # Safety
/// If `address` is ours, it must be a live block, not freed since.
#[inline(always)]
pub unsafe fn free_checked(address: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_checked_in(Domain::RAW, address) }
}

/// # Safety
/// As [`free_checked`].
#[inline(always)]
pub(crate) unsafe fn free_checked_in(domain: Domain, address: *mut u8) -> bool {
    if crate::alloc::registry::contains(address as usize) {
        // SAFETY: ours, and live by the caller's contract.
        unsafe { crate::alloc::domain_heap::free(domain, address) };
        true
    } else {
        // Null, a block aligned beyond a segment (whose own slot is not registered, U6), or not
        // ours.
        free_on_boundary(domain, address)
    }
}

/// C's `free`: frees `address` if it is one of our blocks, does nothing for null, and reports
/// any other address as an invalid pointer (`policy/misuse.rs`) without touching it.
///
/// # Safety
/// If `address` is ours, it must be a live block, not freed since.
#[inline(always)]
pub unsafe fn free_or_report(address: *mut u8) {
    if crate::alloc::registry::contains(address as usize) {
        // SAFETY: ours, and live by the caller's contract.
        unsafe { crate::alloc::domain_heap::free(Domain::RAW, address) };
    } else {
        free_unregistered(address);
    }
}

/// [`free_or_report`] for an address the registry does not hold: one call, in tail position,
/// so that the fast path saves no register for it.
#[cold]
#[inline(never)]
fn free_unregistered(address: *mut u8) {
    if !free_on_boundary(Domain::RAW, address) {
        crate::policy::misuse::report_invalid_pointer(b"free", address as usize);
    }
}

/// Frees the live block at `address` of `domain` (its own), of any kind, from any thread.
///
/// # Safety
/// `address` must be a live block of `domain`.
pub(crate) unsafe fn free_owned_block(domain: Domain, address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe {
        match crate::alloc::huge::over_aligned_segment(address as usize) {
            Some(segment) => crate::alloc::domain_heap::free_huge_block(domain, segment, address),
            None => crate::alloc::domain_heap::free_in_own_domain(domain, address),
        }
    }
}

/// Frees the live block at `address` through the family it belongs to, whatever that is
/// (for callers that name no valid family, after reporting their mistake).
///
/// # Safety
/// `address` must be a live block from this allocator.
pub unsafe fn free_in_own_domain(address: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe {
        if crate::debug::active() {
            return crate::debug::free(crate::debug::domain_of(address), address);
        }
        free_owned_block(block_domain(address), address)
    }
}

impl Domain {
    /// Frees a block of this domain. Null is ignored. A block of another domain is reported as
    /// a mismatch (see [`OnMismatch`](crate::OnMismatch)) and still freed correctly.
    ///
    /// # Safety
    /// `address` must be null or a live block from this allocator.
    #[inline]
    pub unsafe fn free(self, address: *mut u8) {
        // SAFETY: the caller's contract.
        unsafe { free_in(self, address) }
    }

    /// Frees `address` and returns true when it is a live block of this domain (or null);
    /// returns false and leaves it alone when it is another domain's block or not ours at all.
    /// For allocators that wrap another one and must hand its blocks back to it.
    ///
    /// # Safety
    /// If `address` is ours, it must be a live block, not freed since.
    #[inline]
    pub unsafe fn free_if_owned(self, address: *mut u8) -> bool {
        if !crate::alloc::registry::contains(address as usize) {
            return address.is_null()
                || (is_over_aligned_block(address as usize)
                    // SAFETY: ours, and live by the caller's contract.
                    && unsafe { block_domain(address) } == self
                    && free_on_boundary(self, address));
        }
        // SAFETY: ours, and live by the caller's contract.
        unsafe { crate::alloc::domain_heap::free_if_of(self, address) }
    }

    /// As [`free_checked`], through this domain's family.
    ///
    /// # Safety
    /// If `address` is ours, it must be a live block, not freed since.
    pub unsafe fn free_checked(self, address: *mut u8) -> bool {
        // SAFETY: the caller's contract.
        unsafe { free_checked_in(self, address) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    #[test]
    fn blocks_freed_by_another_thread_are_reused() {
        // Allocate on a worker, free here; then the worker's heap gets them back.
        let blocks: Vec<usize> = std::thread::spawn(|| {
            (0..10_000)
                .map(|_| malloc(48).unwrap().as_ptr() as usize)
                .collect()
        })
        .join()
        .unwrap();
        for &block in &blocks {
            // SAFETY: live blocks, each freed once, from a thread that does not own them.
            unsafe { free(block as *mut u8) };
        }
        collect();
    }
}
