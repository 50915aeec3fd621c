//! Allocation: a request's size to the small, large or huge path, zeroing, and the failures
//! (NULL with `errno` ENOMEM). The C library's `malloc`, `calloc` and Rust's `GlobalAlloc`
//! arrive here through the crate's `malloc`, `zalloc` and `calloc`, and a domain's through
//! `Domain::alloc`.

use crate::alloc::size_class::{SizeClass, LARGE_MAX, MAX_REQUEST, MIN_ALIGN};
use crate::policy::domain::Domain;
use core::ptr::NonNull;

/// Allocates `size` bytes. `None` when memory is exhausted or `size` is absurd.
#[inline]
pub fn malloc(size: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate(Domain::RAW, size, None))
}

/// Allocates `size` zeroed bytes.
#[inline]
pub fn zalloc(size: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate(Domain::RAW, size, Some(size)))
}

/// Allocates `count * size` zeroed bytes; `None` if the product overflows.
#[inline]
pub fn calloc(count: usize, size: usize) -> Option<NonNull<u8>> {
    match count.checked_mul(size) {
        Some(total) => zalloc(total),
        None => NonNull::new(size_overflow(b"calloc")),
    }
}

/// A count times a size that overflows: reported in debug mode, then null with ENOMEM.
#[cold]
pub fn size_overflow(call: &[u8]) -> *mut u8 {
    absurd_size(call, usize::MAX)
}

/// A request no memory can hold: reported in debug mode, then null with ENOMEM. (Null through
/// `opaque`, so that `malloc` jumps here rather than calls: platform/opaque.rs.)
#[cold]
pub(crate) fn absurd_size(call: &[u8], size: usize) -> *mut u8 {
    if crate::debug::active() {
        crate::debug::report_absurd_size(call, size);
    }
    crate::platform::opaque::opaque(crate::platform::os::out_of_memory())
}

/// Debug mode costs this path nothing: its pages are never current, so its requests all
/// reach `crate::alloc::domain_heap::malloc_generic`, which hands them to `debug/`.
#[inline(always)]
pub(crate) fn allocate(domain: Domain, size: usize, zero_bytes: Option<usize>) -> *mut u8 {
    // Small requests first: their path then tests the size once.
    if size <= crate::alloc::size_class::SMALL_LOOKUP_MAX {
        crate::alloc::domain_heap::malloc_small(domain, size, zero_bytes)
    } else if size <= LARGE_MAX {
        // Less likely than a small request: the fast path's last few instructions, which the
        // two share, follow the small one's (a jump for the medium and large sizes instead).
        crate::platform::opaque::unlikely();
        crate::alloc::domain_heap::malloc_class(domain, SizeClass::of(size), size, zero_bytes)
    } else if size <= MAX_REQUEST {
        allocate_huge(domain, size, MIN_ALIGN, zero_bytes)
    } else {
        absurd_size(b"malloc", size)
    }
}

#[cold]
pub(crate) fn allocate_huge(
    domain: Domain,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    if crate::debug::active() && !crate::debug::in_layer() {
        return crate::debug::allocate(domain, size, align, zero_bytes.is_some());
    }
    crate::alloc::domain_heap::allocate_huge_unhooked(domain, size, align, zero_bytes)
}

/// The allocator families, as Rust methods. Each returns `None` (with `errno` set) on failure,
/// as the crate-level functions do; the other methods are in `aligned.rs`, `realloc.rs` and
/// `free.rs`.
impl Domain {
    /// Allocates `size` bytes in this domain.
    #[inline]
    pub fn alloc(self, size: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate(self, size, None))
    }

    /// Allocates `size` zeroed bytes in this domain.
    #[inline]
    pub fn zalloc(self, size: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate(self, size, Some(size)))
    }

    /// Allocates `count * size` zeroed bytes; `None` if the product overflows.
    #[inline]
    pub fn calloc(self, count: usize, size: usize) -> Option<NonNull<u8>> {
        match count.checked_mul(size) {
            Some(total) => self.zalloc(total),
            None => NonNull::new(size_overflow(b"calloc")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::testing::{check, fill};
    use crate::*;
    use core::ptr;
    use std::collections::HashSet;

    #[test]
    fn blocks_of_every_kind_are_usable_and_distinct() {
        let sizes = [
            0, 1, 8, 9, 16, 100, 1000, 4096, 10_000, 70_000, 300_000, LARGE_MAX,
        ];
        let sizes = sizes.iter().chain(&[LARGE_MAX + 1, 3 << 20, 20 << 20]);
        let mut live = Vec::new();
        let mut starts = HashSet::new();
        for (index, &size) in sizes.enumerate() {
            let block = malloc(size).expect("malloc");
            assert!(is_ours(block.as_ptr()));
            let alignment = if size <= 8 { 8 } else { MIN_ALIGN };
            assert_eq!(block.as_ptr() as usize % alignment, 0, "size {size}");
            // SAFETY: live block.
            assert!(unsafe { usable_size(block.as_ptr()) } >= size);
            fill(block, size, index as u8);
            assert!(starts.insert(block.as_ptr() as usize));
            live.push((block, size, index as u8));
        }
        for (block, size, seed) in live {
            check(block, size, seed);
            // SAFETY: live block, freed once.
            unsafe { free(block.as_ptr()) };
        }
    }

    #[test]
    fn absurd_requests_fail_cleanly() {
        assert!(malloc(usize::MAX).is_none());
        assert!(malloc(isize::MAX as usize).is_none());
        assert!(calloc(usize::MAX / 2, 3).is_none());
        assert!(calloc(1 << 40, 1 << 40).is_none());
        assert!(aligned_alloc(64, 3).is_none());
        assert!(aligned_alloc(64, 0).is_none());
        assert!(aligned_alloc(64, MAX_ALIGN * 2).is_none());
        assert!(aligned_alloc(usize::MAX - 10, 4096).is_none());
        let block = malloc(100).unwrap();
        // SAFETY: live block; a failed realloc leaves it live.
        unsafe {
            fill(block, 100, 3);
            assert!(realloc(block.as_ptr(), usize::MAX).is_none());
            check(block, 100, 3);
            free(block.as_ptr());
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_recycled() {
        for size in [8, 24, 200, 5000, 100_000, 600_000] {
            let dirty: Vec<_> = (0..50).map(|_| malloc(size).unwrap()).collect();
            for &block in &dirty {
                // SAFETY: live block of `size` bytes.
                unsafe { ptr::write_bytes(block.as_ptr(), 0xEE, size) };
            }
            for block in dirty {
                // SAFETY: live block.
                unsafe { free(block.as_ptr()) };
            }
            for _ in 0..60 {
                let block = calloc(1, size).unwrap();
                // SAFETY: live block of `size` bytes.
                let bytes = unsafe { core::slice::from_raw_parts(block.as_ptr(), size) };
                assert!(bytes.iter().all(|&b| b == 0), "size {size}");
                // SAFETY: live block.
                unsafe { free(block.as_ptr()) };
            }
        }
    }
}
