//! The links of a page's free lists: each free block's first word names the next free block,
//! plainly on a normal page, or XORed with a mask made of the page's key and the block's own
//! address on a secure page (secure mode, `policy/secure.rs`), so that an overwritten or
//! copied link decodes to garbage that the page's checks reject.
//!
//! Invariant **FL1**: a page's key is fixed while it serves blocks (E2 in `secure.rs`), so a
//! link encoded under it decodes under it.

use crate::policy::secure::BUILT_IN;

/// A free block: its first word links to the next free block.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// The mask a link stored in `block` is XORed with: 0 on normal pages (key 0).
#[inline(always)]
fn mask(key: usize, block: *const Block) -> usize {
    // The hardened build keys every page, so it needs no test.
    if !BUILT_IN && key == 0 {
        0
    } else {
        key ^ (block as usize).rotate_left(29)
    }
}

/// The link word to store in `block` for `next`.
#[inline(always)]
pub fn encode(key: usize, block: *const Block, next: *mut Block) -> *mut Block {
    (next as usize ^ mask(key, block)) as *mut Block
}

/// The next block `block`'s link word names.
///
/// # Safety
/// `block` is a free block of a page the caller may read (P1, P2 in `page/mod.rs`).
#[inline(always)]
pub unsafe fn decode(key: usize, block: *const Block) -> *mut Block {
    // SAFETY: the caller's contract.
    let stored = unsafe { (*block).next };
    (stored as usize ^ mask(key, block)) as *mut Block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "secure"))]
    fn a_zero_key_leaves_links_as_they_are_and_a_key_hides_them() {
        let next = 0x7f00_dead_b000 as *mut Block;
        let key = 0x1234_5678_9abc_def1;
        let mut slot = Block {
            next: core::ptr::null_mut(),
        };
        assert_eq!(encode(0, &slot, next), next);
        let stored = encode(key, &slot, next);
        assert_ne!(stored, next);
        slot.next = stored;
        // SAFETY: the slots are valid blocks.
        assert_eq!(unsafe { decode(key, &slot) }, next);
        // Another block's mask differs: a link copied elsewhere decodes to something else.
        let other = Block { next: stored };
        // SAFETY: as above.
        assert_ne!(unsafe { decode(key, &other) }, next);
    }
}
