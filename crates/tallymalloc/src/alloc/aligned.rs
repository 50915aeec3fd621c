//! Aligned allocation: alignments every block has take the normal path; larger ones go to
//! `domain_heap::allocate_aligned_plain` (a class whose blocks fall on the boundary, a page that
//! hands out aligned offsets, or a huge mapping placed for them), or to debug mode.

use crate::alloc::allocate::{allocate, allocate_huge};
use crate::alloc::huge::MAX_ALIGN;
use crate::alloc::segment::HEADER_RESERVE;
use crate::alloc::size_class::{MAX_REQUEST, MIN_ALIGN};
use crate::policy::domain::Domain;
use core::ptr::NonNull;

/// Allocates `size` bytes aligned to `align`, which must be a power of two no larger than
/// [`MAX_ALIGN`] (2^45); `None` otherwise or when memory is exhausted. Alignments from a
/// segment's (4 MiB) on get a mapping of their own placed for them.
pub fn aligned_alloc(size: usize, align: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate_aligned(Domain::RAW, size, align, None))
}

/// As [`aligned_alloc`], zeroed.
pub fn aligned_zalloc(size: usize, align: usize) -> Option<NonNull<u8>> {
    NonNull::new(allocate_aligned(Domain::RAW, size, align, Some(size)))
}

pub(crate) fn allocate_aligned(
    domain: Domain,
    size: usize,
    align: usize,
    zero_bytes: Option<usize>,
) -> *mut u8 {
    if !align.is_power_of_two() || align > MAX_ALIGN || size > MAX_REQUEST {
        return crate::platform::os::out_of_memory();
    }
    if align <= MIN_ALIGN {
        // Blocks of more than 8 bytes are 16-aligned; asking for at least `align` bytes
        // keeps 16-aligned requests out of the 8-byte class. (Debug mode takes these on the
        // slow path, as it does `allocate`'s.)
        let size = if align > 8 { size.max(align) } else { size };
        return allocate(domain, size, zero_bytes);
    }
    if align > HEADER_RESERVE {
        // No page can place such a block: a mapping of its own (debug mode's hook included).
        // This call also keeps `allocate_huge`'s alignment a variable: with `MIN_ALIGN` its
        // only value, LLVM specialised it and malloc's fast path paid a register move (C pair
        // 65 instructions instead of 64).
        return allocate_huge(domain, size, align, zero_bytes);
    }
    if crate::debug::active() {
        return crate::debug::allocate(domain, size, align, zero_bytes.is_some());
    }
    crate::alloc::domain_heap::allocate_aligned_plain(domain, size, align, zero_bytes)
}

impl Domain {
    /// Allocates `size` bytes aligned to `align` (a power of two up to [`MAX_ALIGN`]).
    pub fn aligned_alloc(self, size: usize, align: usize) -> Option<NonNull<u8>> {
        NonNull::new(allocate_aligned(self, size, align, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::testing::{check, fill};
    use crate::*;

    #[test]
    fn alignments_beyond_a_segment_work_through_global_alloc() {
        use core::alloc::{GlobalAlloc, Layout};
        let mut align = 1usize << 20;
        while align <= 1 << 30 {
            for size in [1, 100, 5 << 20] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: GlobalAlloc's contract: the layout's size is not zero; each block is
                // used within its size and freed once with its layout.
                unsafe {
                    let block = TallyMalloc.alloc(layout);
                    assert!(
                        !block.is_null() && (block as usize).is_multiple_of(align),
                        "{align} {size}"
                    );
                    assert!(is_ours(block) && is_block_start(block));
                    assert!(usable_size(block) >= size);
                    block.write_bytes(7, size);
                    let grown = TallyMalloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0);
                    assert_eq!(*grown.add(size - 1), 7);
                    assert_eq!(domain_of(grown), Domain::RAW);
                    grown.add(size * 3 - 1).write(1);
                    let layout = Layout::from_size_align(size * 3, align).unwrap();
                    TallyMalloc.dealloc(grown, layout);
                }
            }
            align *= 2;
        }
    }

    #[test]
    fn every_alignment_up_to_the_maximum_is_honoured() {
        let mut align = 1;
        while align <= 8 << 20 {
            for size in [0, 1, 7, 24, 100, 1000, 70_000, 600_000] {
                let block = aligned_alloc(size, align).expect("aligned_alloc");
                assert_eq!(
                    block.as_ptr() as usize % align,
                    0,
                    "align {align} size {size}"
                );
                // SAFETY: live block.
                unsafe {
                    assert!(usable_size(block.as_ptr()) >= size);
                    fill(block, size, 9);
                    let grown = realloc_aligned(block.as_ptr(), size * 2 + 1, align).unwrap();
                    assert_eq!(grown.as_ptr() as usize % align, 0);
                    check(grown, size, 9);
                    free(grown.as_ptr());
                }
            }
            align *= 2;
        }
    }
}
