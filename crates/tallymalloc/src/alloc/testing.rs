//! Helpers for the allocation tests of this folder: a pattern written into a block and checked.

use core::ptr::NonNull;

/// Writes a pattern made of `seed` into the first `len` bytes of `block`, which the test owns
/// and which holds at least `len` bytes.
pub fn fill(block: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: the caller passes a live block of at least `len` bytes.
    unsafe {
        for offset in 0..len {
            *block.as_ptr().add(offset) = seed.wrapping_add(offset as u8);
        }
    }
}

/// Asserts that the first `len` bytes of `block` still hold [`fill`]'s pattern for `seed`.
pub fn check(block: NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: as in `fill`.
    unsafe {
        for offset in 0..len {
            assert_eq!(*block.as_ptr().add(offset), seed.wrapping_add(offset as u8));
        }
    }
}
