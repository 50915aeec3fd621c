//! `TallyMalloc`: tallymalloc as Rust's `#[global_allocator]`.
//!
//! `GlobalAlloc` promises callers a block of `layout.size()` bytes aligned to `layout.align()`,
//! or null; implementers must not unwind. Every path below returns null on failure and none
//! can panic.

use crate::{aligned_alloc, aligned_zalloc, free, realloc_aligned};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

/// The allocator, for `#[global_allocator] static GLOBAL: TallyMalloc = TallyMalloc;`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TallyMalloc;

// SAFETY: every method honours `GlobalAlloc`'s contract: blocks have at least the layout's
// size and alignment, null signals failure, `dealloc`/`realloc` accept exactly the blocks we
// handed out, and `realloc` keeps the contents and leaves the block intact on failure.
unsafe impl GlobalAlloc for TallyMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        aligned_alloc(layout.size(), layout.align()).map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        aligned_zalloc(layout.size(), layout.align()).map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc's caller passes a block allocated by us.
        unsafe { free(block) }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's caller passes a live block of ours with its layout.
        unsafe { realloc_aligned(block, new_size.max(layout.align()), layout.align()) }
            .map_or(ptr::null_mut(), |p| p.as_ptr())
    }
}
